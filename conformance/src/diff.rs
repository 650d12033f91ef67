//! Failure detail: where two encodings or two decoded frames first differ,
//! and a failed vector's input, so a report says what to look at without
//! a second run.

use serde_json::Value;

/// Hex of at most this many input bytes goes into a report.
const MAX_INPUT_BYTES: usize = 256;

/// `input: <hex>` for a failed vector (long inputs cut, with their length).
pub fn input_line(frame: &[u8]) -> String {
    if frame.len() <= MAX_INPUT_BYTES {
        format!("input: {}", hex::encode(frame))
    } else {
        format!(
            "input: {}... ({} bytes)",
            hex::encode(&frame[..MAX_INPUT_BYTES]),
            frame.len()
        )
    }
}

/// Where two encodings first differ: `first differing byte at offset N
/// (want 0x.., got 0x..)`, or which one is shorter.
pub fn first_difference(want: &[u8], got: &[u8]) -> String {
    match want.iter().zip(got).position(|(a, b)| a != b) {
        Some(i) => format!(
            "first differing byte at offset {i} (want 0x{:02x}, got 0x{:02x})",
            want[i], got[i]
        ),
        None if got.len() < want.len() => format!(
            "first differing byte at offset {}: the encoding ends early ({} of {} bytes)",
            got.len(),
            got.len(),
            want.len()
        ),
        None => format!(
            "first differing byte at offset {}: {} extra bytes",
            want.len(),
            got.len() - want.len()
        ),
    }
}

/// The first field where two neutral-form values differ, as a path
/// (`fields.request_id: want 5, got 6`); `None` when equal.
pub fn json_difference(want: &Value, got: &Value) -> Option<String> {
    walk(want, got, String::new())
}

fn walk(want: &Value, got: &Value, path: String) -> Option<String> {
    if want == got {
        return None;
    }
    let here = |p: &str| {
        if p.is_empty() {
            "(top)".to_string()
        } else {
            p.to_string()
        }
    };
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match g.get(k) {
                    None => return Some(format!("{p}: missing (want {wv})")),
                    Some(gv) => {
                        if let Some(d) = walk(wv, gv, p) {
                            return Some(d);
                        }
                    }
                }
            }
            g.iter().find(|(k, _)| !w.contains_key(*k)).map(|(k, gv)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                format!("{p}: unexpected (got {gv})")
            })
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (wv, gv))| walk(wv, gv, format!("{path}[{i}]"))),
        _ => Some(format!("{}: want {want}, got {got}", here(&path))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_difference_names_the_offset() {
        assert_eq!(
            first_difference(&[1, 2, 3], &[1, 9, 3]),
            "first differing byte at offset 1 (want 0x02, got 0x09)"
        );
        assert!(first_difference(&[1, 2, 3], &[1, 2]).contains("offset 2: the encoding ends early"));
        assert!(first_difference(&[1], &[1, 2]).contains("1 extra bytes"));
    }

    #[test]
    fn json_difference_names_the_field() {
        let want = json!({"kind": "publish_ok", "fields": {"request_id": 5, "a": [1, 2]}});
        let got = json!({"kind": "publish_ok", "fields": {"request_id": 6, "a": [1, 2]}});
        assert_eq!(
            json_difference(&want, &got).as_deref(),
            Some("fields.request_id: want 5, got 6")
        );
        let got = json!({"kind": "publish_ok", "fields": {"a": [1, 3]}});
        assert_eq!(
            json_difference(&want, &got).as_deref(),
            Some("fields.request_id: missing (want 5)")
        );
        assert_eq!(json_difference(&want, &want), None);
    }

    #[test]
    fn long_inputs_are_cut() {
        assert_eq!(input_line(&[0xab, 0x01]), "input: ab01");
        assert!(input_line(&[0; 1000]).ends_with("... (1000 bytes)"));
    }
}
