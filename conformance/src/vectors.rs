//! `vectors` mode: every vector through this toolkit's own codec.

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use felix_wire::vectors::{self, Expect, VectorCase};
use felix_wire::Frame;

use crate::case::{Level, Outcome};
use crate::diff;

/// The vectors this binary was built with: `(path relative to vectors/,
/// contents)`, written by `build.rs`.
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_vectors.rs"));

/// Where the vectors of a run come from; reports name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Shipped inside this binary (the default).
    Embedded,
    /// A directory given with `--dir`.
    Dir(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Embedded => write!(
                f,
                "embedded in felix-conformance {}",
                env!("CARGO_PKG_VERSION")
            ),
            Source::Dir(d) => write!(f, "{}", d.display()),
        }
    }
}

/// Loads the vectors; the error names the file at fault.
pub fn load(source: &Source) -> Result<Vec<VectorCase>, String> {
    let cases = match source {
        Source::Embedded => {
            let files = EMBEDDED
                .iter()
                .map(|(name, text)| {
                    serde_json::from_str(text)
                        .map(|v| (name.to_string(), v))
                        .map_err(|e| format!("embedded {name}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            vectors::parse_files(Path::new("(embedded)"), files).map_err(|e| e.to_string())?
        }
        Source::Dir(dir) => vectors::load_dir(dir).map_err(|e| e.to_string())?,
    };
    if cases.is_empty() {
        return Err(format!("{source}: no vector files found"));
    }
    Ok(cases)
}

/// The case id of a vector.
pub fn case_id(case: &VectorCase) -> String {
    format!("vectors/{}", case.id)
}

/// Runs one vector through felix-wire; a failure's detail adds the first
/// differing field or byte and the input.
pub fn run(case: &VectorCase) -> (String, Level, Outcome) {
    let outcome = match vectors::check(case) {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(with_detail(case, why)),
    };
    (case_id(case), Level::Required, outcome)
}

fn with_detail(case: &VectorCase, why: String) -> String {
    let mut lines = vec![why];
    if let Expect::Valid { decoded, .. } = &case.expect {
        if let Ok((frame, _)) =
            Frame::decode_with_max(Bytes::from(case.frame.clone()), case.max_frame_bytes)
        {
            if let Some(d) = diff::json_difference(decoded, &frame.to_neutral()) {
                lines.push(format!("decoded field differs: {d}"));
            }
        }
        if let Some(want) = vectors::encode_expectation(case) {
            if let Some(bytes) = Frame::from_neutral(decoded)
                .ok()
                .and_then(|f| f.to_bytes().ok())
            {
                if bytes[..] != want[..] {
                    lines.push(diff::first_difference(want, &bytes));
                }
            }
        }
    }
    lines.push(diff::input_line(&case.frame));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_vectors_match_the_checkout() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors");
        let on_disk = load(&Source::Dir(dir)).expect("checkout vectors");
        let embedded = load(&Source::Embedded).expect("embedded vectors");
        assert_eq!(embedded.len(), on_disk.len());
        assert!(embedded
            .iter()
            .zip(&on_disk)
            .all(|(a, b)| a.id == b.id && a.frame == b.frame));
    }

    #[test]
    fn the_readme_case_count_is_current() {
        let readme = include_str!("../../vectors/README.md");
        let cases = load(&Source::Embedded).expect("vectors");
        let valid = cases
            .iter()
            .filter(|c| matches!(c.expect, Expect::Valid { .. }))
            .count();
        let want = format!(
            "{} cases, {valid} valid and {} invalid",
            cases.len(),
            cases.len() - valid
        );
        assert!(
            readme.contains(&want),
            "vectors/README.md should say {want:?}"
        );
    }
}
