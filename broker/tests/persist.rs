//! Replay rings saved on drain and loaded on start (`felix_broker::persist`):
//! every stream survives whatever its name, no two streams share a file,
//! restore obeys declarations, and the files are private to the broker's
//! user, as is the development TLS key (issue 13, finding 7).

mod support;

use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use felix_broker::core::auth::Authenticator;
use felix_broker::core::pubsub::StreamKey;
use felix_broker::core::{Core, CoreSettings};
use felix_broker::persist::{self, LoadReport, SaveReport};
use support::{settings, temp_dir};

fn key(tenant: &str, namespace: &str, stream: &str) -> StreamKey {
    StreamKey {
        tenant: tenant.into(),
        namespace: namespace.into(),
        stream: stream.into(),
    }
}

fn core(f: impl FnOnce(&mut CoreSettings)) -> Core {
    let mut s = settings();
    f(&mut s);
    Core::new(s, Authenticator::Dev)
}

/// Publishes `n` events named after the stream, so rings tell streams apart.
fn publish(core: &Core, key: &StreamKey, n: usize) {
    let payloads: Vec<Bytes> = (0..n).map(|i| Bytes::from(format!("{key}#{i}"))).collect();
    core.pubsub
        .publish(key, &payloads, Instant::now())
        .expect("publish");
}

#[test]
fn a_name_too_long_for_a_hex_file_name_and_a_normal_stream_are_both_saved() {
    let dir = temp_dir("persist-long");
    let before = core(|_| {});
    // Its hex name would be 2 * 211 = 422 bytes, past the 255 most file
    // systems allow; it sorts before `orders`, so today's save loses both.
    let long = key("t1", "default", &"a".repeat(200));
    let normal = key("t1", "default", "orders");
    publish(&before, &long, 3);
    publish(&before, &normal, 2);
    let saved = persist::save(&before, &dir.0).expect("save");
    assert_eq!(
        saved,
        SaveReport {
            saved: 2,
            skipped: 0
        }
    );
    let after = core(|_| {});
    persist::load(&after, &dir.0);
    assert_eq!(after.pubsub.offsets(&long), Some((3, 0)));
    assert_eq!(after.pubsub.offsets(&normal), Some((2, 0)));
    assert_eq!(after.pubsub.snapshot(), before.pubsub.snapshot());
}

#[test]
fn keys_that_joined_to_the_same_text_through_nul_stay_separate() {
    let dir = temp_dir("persist-nul");
    let before = core(|_| {});
    // Both joined to "a\0b\0c\0s" in the old file names.
    let first = key("a\0b", "c", "s");
    let second = key("a", "b\0c", "s");
    publish(&before, &first, 3);
    publish(&before, &second, 5);
    persist::save(&before, &dir.0).expect("save");
    let after = core(|_| {});
    persist::load(&after, &dir.0);
    assert_eq!(after.pubsub.offsets(&first), Some((3, 0)));
    assert_eq!(after.pubsub.offsets(&second), Some((5, 0)));
    assert_eq!(after.pubsub.snapshot(), before.pubsub.snapshot());
}

#[test]
fn without_auto_create_only_declared_streams_are_restored() {
    let dir = temp_dir("persist-declared");
    let before = core(|_| {});
    let declared = key("t1", "default", "declared");
    let undeclared = key("t1", "default", "undeclared");
    publish(&before, &declared, 2);
    publish(&before, &undeclared, 4);
    persist::save(&before, &dir.0).expect("save");
    let after = core(|s| s.auto_create = false);
    after.pubsub.declare(declared.clone());
    let loaded = persist::load(&after, &dir.0);
    assert_eq!((loaded.restored, loaded.undeclared), (1, 1));
    assert_eq!(after.metrics.persist_skipped.load(Ordering::Relaxed), 1);
    assert_eq!(after.pubsub.offsets(&declared), Some((2, 0)));
    assert_eq!(after.pubsub.offsets(&undeclared), None);
    assert_eq!(after.pubsub.stream_count(), 1);
}

/// The names of the files in the rings directory.
fn ring_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("rings"))
        .expect("rings")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_ring_that_cannot_be_written_is_skipped_and_the_others_are_saved() {
    let dir = temp_dir("persist-unwritable");
    let before = core(|_| {});
    let blocked = key("t1", "default", "blocked");
    publish(&before, &blocked, 1);
    persist::save(&before, &dir.0).expect("save");
    // A directory where the ring's file goes makes its rename fail.
    let [name] = &ring_files(&dir.0)[..] else {
        panic!("one ring file expected");
    };
    let path = dir.0.join("rings").join(name);
    std::fs::remove_file(&path).expect("remove");
    std::fs::create_dir_all(path.join("in-the-way")).expect("dir");
    let fine = key("t1", "default", "zz-after-it");
    publish(&before, &fine, 2);
    let saved = persist::save(&before, &dir.0).expect("save");
    assert_eq!(
        saved,
        SaveReport {
            saved: 1,
            skipped: 1
        }
    );
    assert_eq!(before.metrics.persist_skipped.load(Ordering::Relaxed), 1);
    let after = core(|_| {});
    let loaded = persist::load(&after, &dir.0);
    assert_eq!((loaded.restored, loaded.skipped), (1, 1));
    assert_eq!(after.pubsub.offsets(&fine), Some((2, 0)));
    assert_eq!(after.pubsub.offsets(&blocked), None);
}

#[test]
fn damaged_renamed_and_old_format_files_are_skipped_and_counted() {
    let dir = temp_dir("persist-damaged");
    let rings = dir.0.join("rings");
    for (stream, n) in [("intact", 1), ("renamed", 2), ("truncated", 3)] {
        // One stream per save, so the new file is that stream's.
        let before = core(|_| {});
        publish(&before, &key("t1", "default", stream), n);
        let old = std::fs::read_dir(&rings).map_or(0, |_| ring_files(&dir.0).len());
        persist::save(&before, &dir.0).expect("save");
        let names = ring_files(&dir.0);
        assert_eq!(names.len(), old + 1);
        let name = names
            .iter()
            .find(|n| {
                let bytes = std::fs::read(rings.join(n)).expect("read");
                bytes.windows(stream.len()).any(|w| w == stream.as_bytes())
            })
            .expect("the stream's file");
        let path = rings.join(name);
        match stream {
            "renamed" => std::fs::rename(&path, rings.join(format!("{}.ring", "0".repeat(64))))
                .expect("rename"),
            "truncated" => {
                let bytes = std::fs::read(&path).expect("read");
                std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("write");
            }
            _ => {}
        }
    }
    // A ring of the old format and a stray file.
    std::fs::write(dir.0.join("rings/7400640073.flx"), b"old").expect("write");
    std::fs::write(dir.0.join("rings/notes.txt"), b"hello").expect("write");
    let after = core(|_| {});
    let loaded = persist::load(&after, &dir.0);
    assert_eq!(
        loaded,
        LoadReport {
            restored: 1,
            skipped: 2,
            undeclared: 0,
            old_format: 1
        }
    );
    assert_eq!(after.metrics.persist_restored.load(Ordering::Relaxed), 1);
    assert_eq!(after.metrics.persist_skipped.load(Ordering::Relaxed), 2);
    assert_eq!(
        after.pubsub.offsets(&key("t1", "default", "intact")),
        Some((1, 0))
    );
    assert_eq!(after.pubsub.stream_count(), 1);
}

#[cfg(unix)]
#[test]
fn ring_files_and_their_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("persist-modes");
    let before = core(|_| {});
    publish(&before, &key("t1", "default", "orders"), 1);
    persist::save(&before, &dir.0).expect("save");
    let rings = dir.0.join("rings");
    let mode = |p: &std::path::Path| {
        format!(
            "{:o}",
            std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
        )
    };
    assert_eq!(mode(&rings), "700", "rings directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&rings).expect("rings") {
        let path = entry.expect("entry").path();
        assert_eq!(mode(&path), "600", "{}", path.display());
        files += 1;
    }
    assert_eq!(files, 1);
}

#[cfg(unix)]
#[test]
fn the_dev_key_and_its_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("persist-tls");
    felix_broker::tls::load_or_create_dev(&dir.0).expect("dev cert");
    let mode = |p: &std::path::Path| {
        format!(
            "{:o}",
            std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
        )
    };
    assert_eq!(mode(&dir.0.join("tls")), "700");
    assert_eq!(mode(&dir.0.join("tls/key.pem")), "600");
}
