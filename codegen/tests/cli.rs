//! The `felix-codegen` binary finds the checkout from the current
//! directory, not from a path baked in at build time.

use std::process::Command;

fn codegen_in(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_felix-codegen"))
        .arg("--check")
        .current_dir(dir)
        .output()
        .expect("run felix-codegen")
}

#[test]
fn check_finds_the_checkout_from_a_subdirectory() {
    let wire_src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/src");
    let o = codegen_in(&wire_src);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn outside_a_checkout_it_asks_for_root() {
    let dir = std::env::temp_dir().join(format!("felix-codegen-outside-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let o = codegen_in(&dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--root") && err.contains("spec/felix-wire.yaml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
