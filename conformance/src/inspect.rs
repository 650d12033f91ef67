//! `decode` and `encode`: one frame from hex or raw bytes to the neutral
//! JSON form of the vectors, and back. For debugging one's own frames.

use bytes::Bytes;
use felix_wire::{DecodeError, Frame};
use serde_json::Value;

/// How the input bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Hex (whitespace ignored); the default.
    Hex,
    /// The raw frame bytes.
    Raw,
}

/// Decodes every frame in `input`; returns one neutral JSON value per
/// frame, or the error with its class, field and offset.
pub fn decode(
    input: &[u8],
    format: InputFormat,
    max_frame_bytes: u32,
) -> Result<Vec<Value>, String> {
    let bytes = match format {
        InputFormat::Raw => input.to_vec(),
        InputFormat::Hex => {
            let text: String = String::from_utf8_lossy(input).split_whitespace().collect();
            hex::decode(text.trim_start_matches("0x"))
                .map_err(|e| format!("input is not hex: {e} (use --input raw for binary input)"))?
        }
    };
    let mut rest = Bytes::from(bytes);
    let mut frames = Vec::new();
    let mut offset = 0usize;
    while !rest.is_empty() {
        let len_before = rest.len();
        match Frame::decode_with_max(rest, max_frame_bytes) {
            Ok((frame, tail)) => {
                frames.push(frame.to_neutral());
                offset += len_before - tail.len();
                rest = tail;
            }
            Err(e) => return Err(describe_error(&e, offset, frames.len())),
        }
    }
    if frames.is_empty() {
        return Err("no input".into());
    }
    Ok(frames)
}

fn describe_error(e: &DecodeError, stream_offset: usize, index: usize) -> String {
    format!(
        "frame {index} (starting at stream byte {stream_offset}): {} [{}]",
        e,
        e.class()
    )
}

/// Encodes one neutral JSON frame (or an array of them) to hex.
pub fn encode(input: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(input).map_err(|e| format!("input is not JSON: {e}"))?;
    let items = match v {
        Value::Array(items) => items,
        one => vec![one],
    };
    items
        .iter()
        .map(|item| {
            let frame = Frame::from_neutral(item)
                .map_err(|e| format!("not a frame in the neutral form: {e}"))?;
            frame
                .to_bytes()
                .map(hex::encode)
                .map_err(|e| format!("cannot encode: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_then_encode_round_trips() {
        let hex_in = "464c5831000100000000000d 7b2274797065223a226f6b227d";
        let frames = decode(hex_in.as_bytes(), InputFormat::Hex, 1 << 24).expect("decodes");
        assert_eq!(
            frames[0],
            serde_json::json!({"flags": 0, "kind": "ok", "fields": {}})
        );
        let out = encode(&frames[0].to_string()).expect("encodes");
        assert_eq!(out, [hex_in.replace(' ', "")]);
    }

    #[test]
    fn errors_name_class_and_position() {
        let err = decode(b"464c5832000100000000000000", InputFormat::Hex, 1 << 24)
            .expect_err("bad magic");
        assert!(
            err.contains("[bad_magic]") && err.contains("frame 0"),
            "{err}"
        );
    }
}
