//! Runs every language-neutral vector in `vectors/` through the codec:
//! valid frames decode to the listed fields (whole and streamed byte by
//! byte) and, when canonical, re-encode to the same bytes; invalid frames
//! fail with the listed error class.

mod support;

use std::collections::{BTreeSet, HashSet};

use bytes::{Bytes, BytesMut};
use felix_wire::{DecodeError, ErrorClass, Frame, FrameDecoder};

use support::Case;

/// Decodes a whole buffer as the vectors define it.
fn decode(case: &Case) -> Result<Frame, DecodeError> {
    let (frame, rest) =
        Frame::decode_with_max(Bytes::from(case.frame.clone()), case.max_frame_bytes)?;
    assert!(
        rest.is_empty(),
        "{}: vector holds bytes after its frame",
        case.id
    );
    Ok(frame)
}

/// Feeds the frame one byte at a time into the streaming decoder.
fn decode_streamed(case: &Case) -> Result<Option<Frame>, DecodeError> {
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

fn check(case: &Case) -> Result<(), String> {
    if case.valid {
        let frame = decode(case).map_err(|e| format!("decode failed: {e}"))?;
        let neutral = frame.to_neutral();
        if neutral != case.decoded {
            return Err(format!(
                "decoded differs:\n  want {}\n  got  {neutral}",
                case.decoded
            ));
        }
        match decode_streamed(case) {
            Ok(Some(f)) if f == frame => {}
            other => return Err(format!("streamed byte by byte: {other:?}")),
        }
        let built = Frame::from_neutral(&case.decoded).map_err(|e| format!("from_neutral: {e}"))?;
        if built != frame {
            return Err("from_neutral(decoded) differs from the decoded frame".into());
        }
        if case.canonical {
            let bytes = built
                .to_bytes()
                .map_err(|e| format!("encode failed: {e}"))?;
            if bytes[..] != case.frame[..] {
                return Err(format!(
                    "encoding differs:\n  want {}\n  got  {}",
                    hex::encode(&case.frame),
                    hex::encode(&bytes)
                ));
            }
        }
        Ok(())
    } else {
        let want = ErrorClass::from_name(&case.error_class)
            .ok_or_else(|| format!("unknown error class {:?}", case.error_class))?;
        match decode(case) {
            Ok(f) => Err(format!("decoded, but must fail with {want}: {f:?}")),
            Err(e) if e.class() == want => {
                // A streaming decoder must agree: the same error, or (only
                // for `incomplete`) still waiting for more bytes.
                match decode_streamed(case) {
                    Err(s) if s.class() == want => Ok(()),
                    Ok(None) if want == ErrorClass::Incomplete => Ok(()),
                    other => Err(format!("streamed byte by byte gave {other:?}, want {want}")),
                }
            }
            Err(e) => Err(format!("failed with {} ({e}), want {want}", e.class())),
        }
    }
}

#[test]
fn every_vector_passes() {
    let cases = support::cases();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            check(c)
                .err()
                .map(|why| format!("{} ({} #{}): {why}", c.id, c.file, c.tc_id))
        })
        .collect();
    let valid = cases.iter().filter(|c| c.valid).count();
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
    let cases = support::cases();
    let valid = cases.iter().filter(|c| c.valid).count();
    let invalid = cases.len() - valid;
    assert!(valid >= 60, "only {valid} valid vectors");
    assert!(invalid >= 40, "only {invalid} invalid vectors");
    let classes: BTreeSet<&str> = cases
        .iter()
        .filter(|c| !c.valid)
        .map(|c| c.error_class.as_str())
        .collect();
    let missing: Vec<&str> = ErrorClass::ALL
        .iter()
        .map(ErrorClass::as_str)
        .filter(|c| !classes.contains(c))
        .collect();
    assert!(
        missing.is_empty(),
        "no invalid vector exercises: {missing:?}"
    );
    let kinds: HashSet<String> = cases
        .iter()
        .filter(|c| c.valid)
        .filter_map(|c| c.decoded["kind"].as_str().map(str::to_owned))
        .collect();
    for ty in felix_wire::Message::TYPES {
        assert!(kinds.contains(ty), "no valid vector for message {ty}");
    }
    for flags in felix_wire::VALID_FLAG_COMBINATIONS {
        assert!(
            cases.iter().any(|c| c.valid && c.decoded["flags"] == flags),
            "no valid vector with flags {flags:#06x}"
        );
    }
}

#[test]
fn files_are_well_formed() {
    let mut ids = HashSet::new();
    for (file, v) in support::files() {
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
