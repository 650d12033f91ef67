//! Loading the language-neutral test vectors (`vectors/`) and checking a
//! case against this codec. Used by this crate's tests and by
//! `felix-conformance`; the file format is described in `vectors/README.md`.
//!
//! Behind the `vectors` feature, with the `to_neutral`/`from_neutral`
//! methods of the generated types (the neutral form: `{"flags", "kind",
//! "fields"}`, bytes as hex) and their [`NeutralError`].

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::{DecodeError, ErrorClass, Frame, FrameDecoder, DEFAULT_MAX_FRAME_BYTES};

pub use crate::neutral::NeutralError;

/// What a case expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// The frame decodes to `decoded`; when `canonical`, encoding `decoded`
    /// gives the frame back byte for byte; when `encoded` is given, encoding
    /// `decoded` gives those bytes instead (a writer's rule, such as the
    /// 512-byte cut of publish ack text, changes the frame).
    Valid {
        /// The neutral form.
        decoded: Value,
        /// Whether encoding must reproduce the frame.
        canonical: bool,
        /// What encoding `decoded` must give when it is not `frame`.
        encoded: Option<Vec<u8>>,
    },
    /// Decoding fails with this class.
    Invalid {
        /// The class name.
        error_class: String,
    },
}

/// One test case.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorCase {
    /// File, relative to the vectors directory.
    pub file: String,
    /// Number within the file.
    pub tc_id: u64,
    /// Stable id, e.g. `json/cache_put/ttl_null`.
    pub id: String,
    /// What it checks.
    pub comment: String,
    /// Input bytes.
    pub frame: Vec<u8>,
    /// The receiver's payload cap.
    pub max_frame_bytes: u32,
    /// Expected result.
    pub expect: Expect,
}

/// Why vectors could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file is not a valid vector file.
    #[error("{path}: {message}")]
    Format {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "schema") {
                walk(&p, out)?;
            }
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
    Ok(())
}

/// Every vector file under `dir` (the `schema/` folder excluded), parsed,
/// sorted by path.
pub fn load_files(dir: &Path) -> Result<Vec<(String, Value)>, LoadError> {
    let mut paths = Vec::new();
    walk(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&p).map_err(|source| LoadError::Io {
                path: p.clone(),
                source,
            })?;
            let v = serde_json::from_str(&text).map_err(|e| LoadError::Format {
                path: p.clone(),
                message: e.to_string(),
            })?;
            Ok((rel, v))
        })
        .collect()
}

/// Every case of every file under `dir`.
pub fn load_dir(dir: &Path) -> Result<Vec<VectorCase>, LoadError> {
    parse_files(dir, load_files(dir)?)
}

/// Every case of already parsed vector files (`(path relative to the
/// vectors directory, contents)`, as [`load_files`] gives them); `origin`
/// prefixes the paths in errors. For runners that ship the vectors inside
/// their binary rather than reading a directory.
pub fn parse_files(
    origin: &Path,
    files: Vec<(String, Value)>,
) -> Result<Vec<VectorCase>, LoadError> {
    let mut out = Vec::new();
    for (file, v) in files {
        let path = origin.join(&file);
        let bad = |message: String| LoadError::Format {
            path: path.clone(),
            message,
        };
        let groups = v["testGroups"]
            .as_array()
            .ok_or_else(|| bad("no testGroups".into()))?;
        for t in groups
            .iter()
            .flat_map(|g| g["tests"].as_array().into_iter().flatten())
        {
            let id = t["id"]
                .as_str()
                .ok_or_else(|| bad("a test without id".into()))?
                .to_string();
            let hex_text: String = t["frame"]
                .as_str()
                .ok_or_else(|| bad(format!("{id}: no frame")))?
                .split_whitespace()
                .collect();
            let frame =
                hex::decode(&hex_text).map_err(|e| bad(format!("{id}: frame is not hex: {e}")))?;
            let expect = match t["result"].as_str() {
                Some("valid") => Expect::Valid {
                    decoded: t
                        .get("decoded")
                        .cloned()
                        .ok_or_else(|| bad(format!("{id}: valid without decoded")))?,
                    canonical: t.get("canonical").and_then(Value::as_bool).unwrap_or(false),
                    encoded: match t.get("encoded").and_then(Value::as_str) {
                        Some(text) => Some(
                            hex::decode(text.split_whitespace().collect::<String>())
                                .map_err(|e| bad(format!("{id}: encoded is not hex: {e}")))?,
                        ),
                        None => None,
                    },
                },
                Some("invalid") => Expect::Invalid {
                    error_class: t["errorClass"]
                        .as_str()
                        .ok_or_else(|| bad(format!("{id}: invalid without errorClass")))?
                        .to_string(),
                },
                other => {
                    return Err(bad(format!(
                        "{id}: result {other:?} is neither valid nor invalid"
                    )))
                }
            };
            out.push(VectorCase {
                file: file.clone(),
                tc_id: t["tcId"].as_u64().unwrap_or(0),
                id,
                comment: t["comment"].as_str().unwrap_or("").to_string(),
                frame,
                max_frame_bytes: t
                    .get("maxFrameBytes")
                    .and_then(Value::as_u64)
                    .map_or(DEFAULT_MAX_FRAME_BYTES, |n| {
                        n.min(u64::from(u32::MAX)) as u32
                    }),
                expect,
            });
        }
    }
    Ok(out)
}

/// Decodes a whole vector frame with its cap.
fn decode(case: &VectorCase) -> Result<Frame, DecodeError> {
    let (frame, rest) =
        Frame::decode_with_max(Bytes::from(case.frame.clone()), case.max_frame_bytes)?;
    if !rest.is_empty() {
        // Vectors hold exactly one frame; extra bytes would be the next frame.
        return Err(DecodeError::TrailingBytes {
            layout: "vector",
            offset: case.frame.len() - rest.len(),
            count: rest.len(),
        });
    }
    Ok(frame)
}

/// Feeds the frame one byte at a time into a streaming decoder.
fn decode_streamed(case: &VectorCase) -> Result<Option<Frame>, DecodeError> {
    let mut decoder = FrameDecoder::with_max_frame_bytes(case.max_frame_bytes);
    let mut buf = BytesMut::new();
    for b in &case.frame {
        buf.extend_from_slice(&[*b]);
        if let Some(frame) = decoder.decode(&mut buf)? {
            return Ok(Some(frame));
        }
    }
    Ok(None)
}

/// Checks `case` against this codec: whole-buffer decode, byte-by-byte
/// streaming decode, neutral form both ways, and re-encoding when canonical
/// (or when the case says what encoding must give).
pub fn check(case: &VectorCase) -> Result<(), String> {
    match &case.expect {
        Expect::Valid { decoded, .. } => {
            let frame = decode(case).map_err(|e| format!("decode failed: {e}"))?;
            let neutral = frame.to_neutral();
            if &neutral != decoded {
                return Err(format!(
                    "decoded differs:\n  want {decoded}\n  got  {neutral}"
                ));
            }
            match decode_streamed(case) {
                Ok(Some(f)) if f == frame => {}
                other => return Err(format!("streamed byte by byte: {other:?}")),
            }
            let built = Frame::from_neutral(decoded).map_err(|e| format!("from_neutral: {e}"))?;
            if built != frame {
                return Err("building the frame from `decoded` gives a different frame".into());
            }
            if let Some(want) = encode_expectation(case) {
                let bytes = built
                    .to_bytes()
                    .map_err(|e| format!("encode failed: {e}"))?;
                if bytes[..] != want[..] {
                    return Err(format!(
                        "encoding differs:\n  want {}\n  got  {}",
                        hex::encode(want),
                        hex::encode(&bytes)
                    ));
                }
            }
            Ok(())
        }
        Expect::Invalid { error_class } => {
            let want = ErrorClass::from_name(error_class)
                .ok_or_else(|| format!("unknown error class {error_class:?}"))?;
            match decode(case) {
                Ok(f) => Err(format!("decoded, but must fail with {want}: {f:?}")),
                Err(e) if e.class() == want => match decode_streamed(case) {
                    Err(s) if s.class() == want => Ok(()),
                    Ok(None) if want == ErrorClass::Incomplete => Ok(()),
                    other => Err(format!("streamed byte by byte gave {other:?}, want {want}")),
                },
                Err(e) => Err(format!("failed with {} ({e}), want {want}", e.class())),
            }
        }
    }
}

/// The bytes encoding a valid case's `decoded` must give: the frame itself
/// when canonical, its `encoded` bytes when given, else nothing (decode only).
pub fn encode_expectation(case: &VectorCase) -> Option<&[u8]> {
    match &case.expect {
        Expect::Valid {
            encoded: Some(bytes),
            ..
        } => Some(bytes),
        Expect::Valid {
            canonical: true, ..
        } => Some(&case.frame),
        _ => None,
    }
}
