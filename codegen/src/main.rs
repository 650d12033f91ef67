//! `felix-codegen`: regenerate (or check) everything derived from the spec.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

/// Validates spec/felix-wire.yaml and renders the felix-wire codecs
/// (wire/src/generated/, codecs/python/felix_wire/generated/,
/// codecs/typescript/src/generated/), the reference tables
/// (docs/protocol.md) and the positive test vectors (vectors/generated/)
/// from it.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Do not write anything: exit 1 and name every file that differs from
    /// a fresh generation (for CI).
    #[arg(long)]
    check: bool,

    /// Workspace root holding spec/, wire/, docs/ and vectors/ [default:
    /// the nearest directory upwards from the current one that holds
    /// spec/felix-wire.yaml].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

/// The checkout the current directory is in: the nearest ancestor holding
/// the spec. Found at run time, like cargo finds its manifest, so the
/// binary carries no path of the machine that built it.
fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join(felix_codegen::SPEC_PATH).is_file())
        .map(Path::to_path_buf)
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let root = match args.root.take() {
        Some(r) => r,
        None => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            match find_root(&cwd) {
                Some(r) => r,
                None => {
                    eprintln!(
                        "error: no {} in {} or above it: run felix-codegen inside a felix-wire checkout, or pass --root DIR",
                        felix_codegen::SPEC_PATH,
                        cwd.display()
                    );
                    return ExitCode::from(2);
                }
            }
        }
    };
    let args = Resolved {
        check: args.check,
        root,
    };
    let files = match felix_codegen::generate(&args.root) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        let stale = felix_codegen::stale_files(&args.root, &files);
        if stale.is_empty() {
            println!(
                "felix-codegen: {} generated files are up to date",
                files.len()
            );
            return ExitCode::SUCCESS;
        }
        for s in &stale {
            eprintln!("stale: {}: {}", s.path, s.reason);
        }
        eprintln!(
            "{} file(s) are stale; run `cargo run -p felix-codegen` and commit the result",
            stale.len()
        );
        return ExitCode::FAILURE;
    }
    match felix_codegen::write(&args.root, &files) {
        Ok(changed) if changed.is_empty() => {
            println!("felix-codegen: {} files, all up to date", files.len());
            ExitCode::SUCCESS
        }
        Ok(changed) => {
            for c in &changed {
                println!("wrote {c}");
            }
            println!(
                "felix-codegen: {} of {} files changed",
                changed.len(),
                files.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

struct Resolved {
    check: bool,
    root: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_found_upwards_from_the_current_directory() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace")
            .to_path_buf();
        assert_eq!(find_root(&root.join("wire/src")), Some(root.clone()));
        assert_eq!(find_root(&root), Some(root));
        assert_eq!(find_root(Path::new("/")), None);
    }
}
