//! Loading the language-neutral test vectors from `vectors/`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One test case with the file it came from.
pub(crate) struct Case {
    pub(crate) file: String,
    pub(crate) tc_id: u64,
    pub(crate) id: String,
    pub(crate) frame: Vec<u8>,
    pub(crate) max_frame_bytes: u32,
    pub(crate) valid: bool,
    pub(crate) canonical: bool,
    pub(crate) decoded: Value,
    pub(crate) error_class: String,
}

pub(crate) fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read vectors dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "schema") {
                walk(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

/// Every vector file, parsed, sorted by path.
pub(crate) fn files() -> Vec<(String, Value)> {
    let root = vectors_dir();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap_or(&p).display().to_string();
            let text = std::fs::read_to_string(&p).expect("read vector file");
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, v)
        })
        .collect()
}

/// Every test case of every file.
pub(crate) fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (file, v) in files() {
        for group in v["testGroups"].as_array().expect("testGroups") {
            for t in group["tests"].as_array().expect("tests") {
                let hex_text: String = t["frame"]
                    .as_str()
                    .expect("frame")
                    .split_whitespace()
                    .collect();
                out.push(Case {
                    file: file.clone(),
                    tc_id: t["tcId"].as_u64().expect("tcId"),
                    id: t["id"].as_str().expect("id").to_string(),
                    frame: hex::decode(&hex_text)
                        .unwrap_or_else(|e| panic!("{file}: bad hex: {e}")),
                    max_frame_bytes: t
                        .get("maxFrameBytes")
                        .and_then(Value::as_u64)
                        .map_or(16_777_216, |n| n as u32),
                    valid: t["result"] == "valid",
                    canonical: t.get("canonical").and_then(Value::as_bool).unwrap_or(false),
                    decoded: t.get("decoded").cloned().unwrap_or(Value::Null),
                    error_class: t
                        .get("errorClass")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                });
            }
        }
    }
    out
}
