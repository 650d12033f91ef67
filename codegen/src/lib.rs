//! `felix-codegen`: turns `spec/felix-wire.yaml` into the felix-wire codecs
//! (Rust, Python, TypeScript), the reference tables and the positive test
//! vectors.
//!
//! # Layout
//!
//! - [`spec`]: the serde model of the YAML file, exactly as written.
//! - [`validate`]: semantic checks, each problem with file, line and column
//!   (found by [`locate`]).
//! - [`model`]: the validated spec resolved into names, types and literals
//!   the templates print.
//! - [`render`]: one [`render::Backend`] per language, each with its own
//!   askama templates (`templates/<language>/`, one per construct), into
//!   `wire/src/generated/`, `codecs/python/felix_wire/generated/` and
//!   `codecs/typescript/src/generated/`; and `docs/protocol.md`.
//! - [`interp`]: a run-time interpreter of the spec that encodes frames
//!   without generated code; it writes the vectors ([`vectors`]) and serves
//!   differential tests; [`interp_decode`] decodes the same way.
//! - [`generate`] / [`check`]: the whole pipeline, and the staleness check
//!   behind `felix-codegen --check`.

use std::path::{Path, PathBuf};

pub mod interp;
pub mod interp_decode;
pub mod locate;
pub mod model;
pub mod render;
pub mod spec;
pub mod validate;
pub mod vectors;

pub use validate::Problem;

/// The spec's path relative to the workspace root.
pub const SPEC_PATH: &str = "spec/felix-wire.yaml";

/// Directories whose every file is generated: a file there that generation
/// does not produce is stale too. Every backend's directories, and the
/// vectors.
pub fn generated_dirs() -> Vec<&'static str> {
    let mut dirs: Vec<&'static str> = render::BACKENDS
        .iter()
        .flat_map(|b| b.generated_dirs().iter().copied())
        .collect();
    dirs.push("vectors/generated");
    dirs
}

/// Directory names inside generated directories that belong to tools, not
/// to the generator (Python's bytecode cache), and are never stale.
const TOOL_DIRS: &[&str] = &["__pycache__"];

/// One output file, path relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the workspace root, `/`-separated.
    pub path: String,
    /// Full contents.
    pub contents: String,
}

/// Everything that can stop generation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The spec is not valid YAML or does not fit the spec format.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// serde's message.
        message: String,
    },
    /// The spec parsed but is inconsistent.
    #[error("{} problem(s) in the spec:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    /// A template or rustfmt failed.
    #[error(transparent)]
    Render(#[from] render::RenderError),
    /// Writing an output failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Parses and validates spec text; `path` is used in messages.
pub fn parse_spec(path: &str, source: &str) -> Result<spec::Spec, Error> {
    let spec: spec::Spec = serde_yaml_ng::from_str(source).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        Error::Parse {
            path: path.to_string(),
            line,
            column,
            message: e.to_string(),
        }
    })?;
    let problems = validate::validate(&spec, path, source);
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(Error::Invalid(problems))
    }
}

/// Renders every output from spec text.
pub fn generate_from_source(path: &str, source: &str) -> Result<Vec<GeneratedFile>, Error> {
    let spec = parse_spec(path, source)?;
    let model = model::Model::new(&spec);
    let mut files = Vec::new();
    for backend in render::BACKENDS {
        files.extend(backend.render(&model)?);
    }
    files.push(render::protocol_doc(&model)?);
    files.extend(vectors::vector_files(&spec, path, source).map_err(Error::Invalid)?);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Renders every output from the spec under workspace `root`.
pub fn generate(root: &Path) -> Result<Vec<GeneratedFile>, Error> {
    let path = root.join(SPEC_PATH);
    let source = std::fs::read_to_string(&path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    generate_from_source(SPEC_PATH, &source)
}

/// Writes `files` under `root`, removing stale files from the generated
/// directories. Returns the paths that changed.
pub fn write(root: &Path, files: &[GeneratedFile]) -> Result<Vec<String>, Error> {
    let mut changed = Vec::new();
    for stale in stale_files(root, files) {
        if !files.iter().any(|f| f.path == stale.path) {
            let p = root.join(&stale.path);
            std::fs::remove_file(&p).map_err(|source| Error::Write {
                path: stale.path.clone(),
                source,
            })?;
            changed.push(stale.path);
        }
    }
    for f in files {
        let p = root.join(&f.path);
        if std::fs::read_to_string(&p).ok().as_deref() == Some(f.contents.as_str()) {
            continue;
        }
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Write {
                path: f.path.clone(),
                source,
            })?;
        }
        std::fs::write(&p, &f.contents).map_err(|source| Error::Write {
            path: f.path.clone(),
            source,
        })?;
        changed.push(f.path.clone());
    }
    Ok(changed)
}

/// A checked-in file that differs from a fresh generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// Path relative to the workspace root.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if TOOL_DIRS.iter().any(|t| e.file_name() == *t) {
                    continue;
                }
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

/// Compares `files` with what is on disk under `root`.
pub fn stale_files(root: &Path, files: &[GeneratedFile]) -> Vec<Stale> {
    let mut stale = Vec::new();
    for f in files {
        match std::fs::read_to_string(root.join(&f.path)) {
            Ok(on_disk) if on_disk == f.contents => {}
            Ok(_) => stale.push(Stale { path: f.path.clone(), reason: "differs from a fresh generation (edited by hand, or the spec or templates changed)" }),
            Err(_) => stale.push(Stale { path: f.path.clone(), reason: "missing" }),
        }
    }
    for dir in generated_dirs() {
        let mut found = Vec::new();
        walk(&root.join(dir), &mut found);
        for p in found {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if !files.iter().any(|f| f.path == rel) {
                stale.push(Stale {
                    path: rel,
                    reason: "not produced by the generator (delete it or regenerate)",
                });
            }
        }
    }
    stale.sort_by(|a, b| a.path.cmp(&b.path));
    stale
}

/// Generates in memory and lists what differs on disk.
pub fn check(root: &Path) -> Result<Vec<Stale>, Error> {
    let files = generate(root)?;
    Ok(stale_files(root, &files))
}

/// The workspace root, for tests and the binary's default: the parent of
/// this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
