//! `felix-codegen`: regenerate (or check) everything derived from the spec.

use std::path::PathBuf;
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

    /// Workspace root holding spec/, wire/, docs/ and vectors/.
    #[arg(long, value_name = "DIR", default_value_os_t = felix_codegen::workspace_root())]
    root: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
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
