//! Replay rings across restarts: on a graceful drain every stream's ring is
//! written to `<data_dir>/rings/`, and loaded again on start, so clients
//! resume from an offset with no gap or duplicate within the ring.
//!
//! Each file holds one felix-wire shared event batch with offsets (`0x0024`):
//! `base_offset` is the oldest retained offset and the payloads are the
//! ring, so the format is the protocol's own and any felix-wire decoder
//! reads it. The file name is the hex of `tenant/namespace/stream`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use felix_wire::{BinarySharedEventBatch, Frame};

use crate::core::pubsub::{PubSub, StreamKey};

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("rings")
}

fn file_name(key: &StreamKey) -> String {
    format!(
        "{}.flx",
        hex_encode(&format!(
            "{}\u{0}{}\u{0}{}",
            key.tenant, key.namespace, key.stream
        ))
    )
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn parse_name(name: &str) -> Option<StreamKey> {
    let hex = name.strip_suffix(".flx")?;
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let mut parts = text.split('\u{0}');
    Some(StreamKey {
        tenant: parts.next()?.into(),
        namespace: parts.next()?.into(),
        stream: parts.next()?.into(),
    })
}

/// Writes every ring; returns how many streams were saved.
pub fn save(pubsub: &PubSub, data_dir: &Path) -> std::io::Result<usize> {
    let dir = dir(data_dir);
    std::fs::create_dir_all(&dir)?;
    let snapshot = pubsub.snapshot();
    for (key, oldest, payloads) in &snapshot {
        let frame = Frame::from(BinarySharedEventBatch {
            base_offset: Some(*oldest),
            payloads: payloads.clone(),
        });
        let bytes = frame.to_bytes().map_err(std::io::Error::other)?;
        let tmp = dir.join(format!("{}.tmp", file_name(key)));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, dir.join(file_name(key)))?;
    }
    Ok(snapshot.len())
}

/// Loads every saved ring; returns how many streams were restored. A file
/// that does not decode is skipped with a warning, never fatal.
pub fn load(pubsub: &PubSub, data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir(data_dir)) else {
        return 0;
    };
    let mut restored = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(key) = parse_name(&name) else {
            continue;
        };
        let decoded = std::fs::read(entry.path())
            .ok()
            .and_then(|b| Frame::decode_with_max(Bytes::from(b), u32::MAX).ok());
        match decoded {
            Some((
                Frame::BinarySharedEventBatch(BinarySharedEventBatch {
                    base_offset: Some(oldest),
                    payloads,
                }),
                _,
            )) => {
                pubsub.restore(key, oldest, payloads);
                restored += 1;
            }
            _ => {
                tracing::warn!(file = %entry.path().display(), "unreadable replay ring snapshot; skipped")
            }
        }
    }
    restored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_any_characters() {
        let key = StreamKey {
            tenant: "t/1".into(),
            namespace: "é".into(),
            stream: "a.b".into(),
        };
        assert_eq!(parse_name(&file_name(&key)), Some(key));
    }
}
