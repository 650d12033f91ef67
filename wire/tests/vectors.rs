//! Runs every language-neutral vector in `vectors/` through the codec:
//! valid frames decode to the listed fields (whole and streamed byte by
//! byte) and, when canonical, re-encode to the same bytes; invalid frames
//! fail with the listed error class.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use felix_wire::vectors::{self, Expect, VectorCase};
use felix_wire::ErrorClass;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vectors")
}

fn cases() -> Vec<VectorCase> {
    vectors::load_dir(&dir()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_vector_passes() {
    let cases = cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            vectors::check(c)
                .err()
                .map(|why| format!("{} ({} #{}): {why}", c.id, c.file, c.tc_id))
        })
        .collect();
    let valid = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Valid { .. }))
        .count();
    println!(
        "vectors: {} cases, {valid} valid, {} invalid, {} failures",
        cases.len(),
        cases.len() - valid,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn coverage_meets_the_floor() {
    let cases = cases();
    let valid: Vec<&serde_json::Value> = cases
        .iter()
        .filter_map(|c| match &c.expect {
            Expect::Valid { decoded, .. } => Some(decoded),
            Expect::Invalid { .. } => None,
        })
        .collect();
    let classes: BTreeSet<&str> = cases
        .iter()
        .filter_map(|c| match &c.expect {
            Expect::Invalid { error_class } => Some(error_class.as_str()),
            Expect::Valid { .. } => None,
        })
        .collect();
    let invalid = cases.len() - valid.len();
    assert!(valid.len() >= 60, "only {} valid vectors", valid.len());
    assert!(invalid >= 40, "only {invalid} invalid vectors");
    let missing: Vec<&str> = ErrorClass::ALL
        .iter()
        .map(ErrorClass::as_str)
        .filter(|c| !classes.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "no invalid vector exercises: {missing:?}"
    );
    let kinds: HashSet<&str> = valid.iter().filter_map(|d| d["kind"].as_str()).collect();
    for ty in felix_wire::Message::TYPES {
        assert!(kinds.contains(ty), "no valid vector for message {ty}");
    }
    for flags in felix_wire::VALID_FLAG_COMBINATIONS {
        assert!(
            valid.iter().any(|d| d["flags"] == flags),
            "no valid vector with flags {flags:#06x}"
        );
    }
}

#[test]
fn files_are_well_formed() {
    let mut ids = HashSet::new();
    for (file, v) in vectors::load_files(&dir()).unwrap_or_else(|e| panic!("{e}")) {
        assert_eq!(v["format"], "felix-wire-test-vectors", "{file}");
        assert_eq!(v["formatVersion"], 1, "{file}");
        let tests: Vec<&serde_json::Value> = v["testGroups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["tests"].as_array().expect("tests"))
            .collect();
        assert_eq!(v["numberOfTests"], tests.len(), "{file}: numberOfTests");
        for (i, t) in tests.iter().enumerate() {
            assert_eq!(t["tcId"], i + 1, "{file}: tcIds must run 1..n");
            let id = t["id"].as_str().expect("id").to_string();
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '/'),
                "{file}: id {id}"
            );
            assert!(ids.insert(id.clone()), "{file}: duplicate id {id}");
            for flag in t["flags"].as_array().expect("flags") {
                let flag = flag.as_str().expect("flag");
                assert!(
                    v["notes"].get(flag).is_some(),
                    "{file}: flag {flag} of {id} has no note"
                );
            }
        }
    }
}

/// The edge-case table of docs/protocol.md names a vector for each
/// decision; a renamed or dropped vector would leave the docs pointing at
/// nothing.
#[test]
fn every_vector_the_protocol_docs_name_exists() {
    let docs =
        std::fs::read_to_string(dir().join("../docs/protocol.md")).expect("docs/protocol.md");
    let ids: HashSet<String> = cases().into_iter().map(|c| c.id).collect();
    let table = docs
        .split("### Edge cases, pinned by vectors")
        .nth(1)
        .expect("docs/protocol.md has the edge-case table");
    let named: Vec<&str> = table
        .split('`')
        .filter(|s| s.starts_with("valid/") || s.starts_with("invalid/"))
        .collect();
    assert!(named.len() >= 14, "the table names {} vectors", named.len());
    let missing: Vec<&&str> = named.iter().filter(|id| !ids.contains(**id)).collect();
    assert!(
        missing.is_empty(),
        "docs/protocol.md names vectors that do not exist: {missing:?}"
    );
}

/// Encoders cut binary ack text to 512 bytes (felix-wire notes 3.3), and a
/// vector pins it so every codec's encoder is judged on it.
#[test]
fn a_vector_pins_the_encoders_cut_of_ack_text() {
    let case = cases()
        .into_iter()
        .find(|c| c.id == "valid/binary/publish_ack_text_over_512_bytes")
        .expect("the vector");
    let encoded = vectors::encode_expectation(&case).expect("it names its encoded bytes");
    assert_eq!(case.frame.len(), 12 + 11 + 600);
    assert_eq!(
        encoded.len(),
        12 + 11 + 511,
        "cut before the 2-byte character at 511"
    );
    vectors::check(&case).expect("felix-wire's encoder cuts the text");
}
