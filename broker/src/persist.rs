//! Replay rings across restarts: on a graceful drain every stream's ring is
//! written to `<data_dir>/rings/`, and loaded again on start, so clients
//! resume from an offset with no gap or duplicate within the ring.
//!
//! # Files
//!
//! One file per stream, named `<sha256>.ring`: the hex SHA-256 of the
//! file's key section (below). Hashing keeps every name 69 bytes long,
//! whatever the stream is called (file systems refuse names over 255
//! bytes), and no two streams share a file: the key section spells out
//! each part with its length, so no choice of tenant, namespace or stream
//! name makes two keys encode alike. A file is self-describing:
//!
//! | bytes | content |
//! | --- | --- |
//! | 8 | magic `FLXRING\n` |
//! | 2 | format version, big-endian: 1 |
//! | 4 + n, three times | tenant, namespace, stream: u32 big-endian length, UTF-8 |
//! | rest | one felix-wire shared event batch with offsets (`0x0024`) |
//!
//! The batch's `base_offset` is the oldest retained offset and its payloads
//! are the ring, so the body is the protocol's own format and any
//! felix-wire decoder reads it.
//!
//! # Failures
//!
//! A ring that cannot be written is logged, counted
//! (`felix_persist_skipped`) and skipped; the other streams are still
//! saved. On load a file that does not decode, or whose key section does
//! not hash to its name (renamed or tampered with), is logged, counted and
//! skipped. Outside dev mode (streams not auto-created) only declared
//! streams are restored: a file never declares a stream.
//!
//! Files written before this format (`<hex of tenant\0namespace\0stream>.flx`,
//! whose names could collide and overflow) are ignored with a warning.
//!
//! The directory is created `0700` and every file `0600` on Unix: rings
//! hold every tenant's recent events.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use felix_wire::{BinarySharedEventBatch, Frame};
use sha2::{Digest as _, Sha256};

use crate::core::pubsub::StreamKey;
use crate::core::Core;

/// First bytes of every ring file.
const MAGIC: &[u8; 8] = b"FLXRING\n";
/// The format version this broker writes and reads.
const VERSION: u16 = 1;
/// Suffix of ring files.
const SUFFIX: &str = ".ring";
/// Suffix of the files of the format before [`VERSION`] 1.
const OLD_SUFFIX: &str = ".flx";

/// Why saving could not even start (per-ring failures are skipped instead).
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The rings directory could not be created.
    #[error("{path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Why one ring file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RingFileError {
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A key part does not fit the u32 length prefix.
    #[error("{0} is longer than 4 GiB")]
    KeyTooLong(&'static str),
    /// The ring does not encode as a felix-wire frame.
    #[error("encoding the ring: {0}")]
    Encode(#[from] felix_wire::EncodeError),
    /// Not this format (or a version this broker does not read).
    #[error("not a version {VERSION} ring file: {0}")]
    Header(&'static str),
    /// The key section hashes to another name: the file was renamed or altered.
    #[error("its key {key} does not hash to its file name")]
    NameMismatch {
        /// The key the file holds.
        key: StreamKey,
    },
    /// The body is not a felix-wire shared event batch with offsets.
    #[error("body: {0}")]
    Body(String),
}

/// What [`save`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveReport {
    /// Streams written.
    pub saved: usize,
    /// Streams that could not be written (each logged).
    pub skipped: usize,
}

/// What [`load`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Streams restored.
    pub restored: usize,
    /// Files that did not decode or whose name does not match (each logged).
    pub skipped: usize,
    /// Rings of streams that are not declared while streams are not
    /// auto-created (each logged).
    pub undeclared: usize,
    /// Files of the old format, ignored.
    pub old_format: usize,
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("rings")
}

/// The key section: each part length-prefixed, so the encoding is
/// injective (unlike joining with a separator the parts may contain).
fn encode_key(key: &StreamKey) -> Result<Vec<u8>, RingFileError> {
    let mut out = Vec::new();
    for (what, part) in [
        ("tenant", &key.tenant),
        ("namespace", &key.namespace),
        ("stream", &key.stream),
    ] {
        let len = u32::try_from(part.len()).map_err(|_| RingFileError::KeyTooLong(what))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    Ok(out)
}

/// The file name of a key section: its SHA-256 in hex.
fn file_name(key_section: &[u8]) -> String {
    let digest = Sha256::digest(key_section);
    let mut name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    name.push_str(SUFFIX);
    name
}

/// A whole ring file.
fn encode_ring(
    key: &StreamKey,
    oldest: u64,
    payloads: &[Bytes],
) -> Result<(String, Vec<u8>), RingFileError> {
    let key_section = encode_key(key)?;
    let frame = Frame::from(BinarySharedEventBatch {
        base_offset: Some(oldest),
        payloads: payloads.to_vec(),
    })
    .to_bytes()?;
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + key_section.len() + frame.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&key_section);
    out.extend_from_slice(&frame);
    Ok((file_name(&key_section), out))
}

/// Splits `n` bytes off the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], RingFileError> {
    if input.len() < n {
        return Err(RingFileError::Header("truncated"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_part(input: &mut &[u8]) -> Result<String, RingFileError> {
    let len = u32::from_be_bytes(
        take(input, 4)?
            .try_into()
            .map_err(|_| RingFileError::Header("truncated"))?,
    );
    let len = usize::try_from(len).map_err(|_| RingFileError::Header("key part too long"))?;
    String::from_utf8(take(input, len)?.to_vec())
        .map_err(|_| RingFileError::Header("key part is not UTF-8"))
}

/// A decoded ring file: its key, oldest retained offset and payloads.
type Ring = (StreamKey, u64, Vec<Bytes>);

/// Decodes a ring file named `name`, checking that its key hashes to it.
fn decode_ring(name: &str, bytes: &[u8]) -> Result<Ring, RingFileError> {
    let mut input = bytes;
    if take(&mut input, MAGIC.len())? != MAGIC {
        return Err(RingFileError::Header("bad magic"));
    }
    if take(&mut input, 2)? != VERSION.to_be_bytes() {
        return Err(RingFileError::Header("unknown version"));
    }
    let key_start = bytes.len() - input.len();
    let key = StreamKey {
        tenant: take_part(&mut input)?,
        namespace: take_part(&mut input)?,
        stream: take_part(&mut input)?,
    };
    let key_section = &bytes[key_start..bytes.len() - input.len()];
    if file_name(key_section) != name {
        return Err(RingFileError::NameMismatch { key });
    }
    let (oldest, payloads) = decode_body(input)?;
    Ok((key, oldest, payloads))
}

fn decode_body(body: &[u8]) -> Result<(u64, Vec<Bytes>), RingFileError> {
    let bad = |why: String| RingFileError::Body(why);
    let (frame, rest) = Frame::decode_with_max(Bytes::copy_from_slice(body), u32::MAX)
        .map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the frame", rest.len())));
    }
    match frame {
        Frame::BinarySharedEventBatch(BinarySharedEventBatch {
            base_offset: Some(oldest),
            payloads,
        }) if oldest.checked_add(payloads.len() as u64).is_some() => Ok((oldest, payloads)),
        _ => Err(bad("not a shared event batch with in-range offsets".into())),
    }
}

/// Creates `path` (and missing parents) private to this user: `0700` on
/// Unix. An existing `path` is narrowed to `0700` too, so a directory left
/// by an older broker stops exposing what it holds.
pub(crate) fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(path)?;
    narrow_mode(path, 0o700);
    Ok(())
}

/// Narrows an existing file or directory to `mode` (Unix permission bits)
/// if it allows more; returns whether it did. Best effort: a failure is
/// logged, not returned, so a read-only data directory that an older
/// broker filled still serves.
pub(crate) fn narrow_mode(path: &Path, mode: u32) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let Ok(meta) = std::fs::metadata(path) else {
            return false;
        };
        if meta.permissions().mode() & 0o777 & !mode == 0 {
            return false;
        }
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "could not make it private to this user");
                false
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        false
    }
}

/// Writes `bytes` to `path`, readable and writable by this user only
/// (`0600` on Unix, set when the file is created, so it is never readable
/// by others even for a moment). Not synced to disk: a save of thousands
/// of rings on shutdown would wait for as many flushes, and a file cut
/// short by a power loss is skipped on load, never misread.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file: File = options.open(path)?;
    // `mode` only applies to a file it creates: narrow a leftover too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)
}

/// Writes one ring: to a temporary file first, renamed over the old one,
/// so a crash mid-write never leaves a half ring under the real name.
fn save_ring(
    dir: &Path,
    key: &StreamKey,
    oldest: u64,
    payloads: &[Bytes],
) -> Result<(), RingFileError> {
    let (name, bytes) = encode_ring(key, oldest, payloads)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let written =
        write_private_file(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, dir.join(&name)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(written?)
}

/// Writes every ring. A ring that cannot be written is logged, counted in
/// `persist_skipped` and skipped; only a rings directory that cannot be
/// created fails the whole save.
pub fn save(core: &Core, data_dir: &Path) -> Result<SaveReport, PersistError> {
    let dir = dir(data_dir);
    create_private_dir(&dir).map_err(|source| PersistError::Dir {
        path: dir.clone(),
        source,
    })?;
    let mut report = SaveReport::default();
    for (key, oldest, payloads) in core.pubsub.snapshot() {
        match save_ring(&dir, &key, oldest, &payloads) {
            Ok(()) => report.saved += 1,
            Err(error) => {
                tracing::warn!(stream = %key, %error, "replay ring not saved; skipped");
                core.metrics.persist_skipped.fetch_add(1, Ordering::Relaxed);
                report.skipped += 1;
            }
        }
    }
    Ok(report)
}

/// What became of one file in the rings directory.
enum Loaded {
    Restored,
    Skipped,
    Undeclared,
    OldFormat,
    NotARing,
}

fn load_file(core: &Core, path: &Path) -> Loaded {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Loaded::NotARing;
    };
    if name.ends_with(OLD_SUFFIX) {
        return Loaded::OldFormat;
    }
    if !name.ends_with(SUFFIX) {
        return Loaded::NotARing;
    }
    let decoded = std::fs::read(path)
        .map_err(RingFileError::from)
        .and_then(|bytes| decode_ring(name, &bytes));
    match decoded {
        Ok((key, oldest, payloads)) => {
            if core.pubsub.restore(key.clone(), oldest, payloads) {
                Loaded::Restored
            } else {
                tracing::warn!(stream = %key, file = %path.display(), "replay ring of an undeclared stream; skipped (declare the stream to keep it)");
                Loaded::Undeclared
            }
        }
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "unreadable replay ring; skipped");
            Loaded::Skipped
        }
    }
}

/// Loads every saved ring. Nothing here is fatal: files that do not
/// decode, do not match their name, or belong to undeclared streams (when
/// streams are not auto-created) are logged, counted and skipped.
pub fn load(core: &Core, data_dir: &Path) -> LoadReport {
    let dir = dir(data_dir);
    let mut report = LoadReport::default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return report;
    };
    for entry in entries.flatten() {
        match load_file(core, &entry.path()) {
            Loaded::Restored => report.restored += 1,
            Loaded::Skipped => report.skipped += 1,
            Loaded::Undeclared => report.undeclared += 1,
            Loaded::OldFormat => report.old_format += 1,
            Loaded::NotARing => {}
        }
    }
    if report.old_format > 0 {
        tracing::warn!(files = report.old_format, dir = %dir.display(), "replay rings of an older format (*.flx) ignored; delete them once no older broker needs them");
    }
    let metrics = &core.metrics;
    let skipped = report.skipped + report.undeclared;
    metrics
        .persist_restored
        .fetch_add(report.restored as u64, Ordering::Relaxed);
    metrics
        .persist_skipped
        .fetch_add(skipped as u64, Ordering::Relaxed);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, namespace: &str, stream: &str) -> StreamKey {
        StreamKey {
            tenant: tenant.into(),
            namespace: namespace.into(),
            stream: stream.into(),
        }
    }

    fn payloads() -> Vec<Bytes> {
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")]
    }

    #[test]
    fn a_ring_file_round_trips_any_characters() {
        let k = key("t/1", "é\0", &"x".repeat(1000));
        let (name, bytes) = encode_ring(&k, 7, &payloads()).expect("encode");
        assert_eq!(name.len(), 64 + SUFFIX.len());
        assert_eq!(
            decode_ring(&name, &bytes).expect("decode"),
            (k, 7, payloads())
        );
    }

    #[test]
    fn names_differ_where_joined_names_collided() {
        let a = encode_key(&key("a\0b", "c", "s")).expect("key");
        let b = encode_key(&key("a", "b\0c", "s")).expect("key");
        assert_ne!(file_name(&a), file_name(&b));
    }

    #[test]
    fn a_renamed_or_damaged_file_is_refused() {
        let (name, bytes) = encode_ring(&key("t", "n", "s"), 0, &payloads()).expect("encode");
        let (other, _) = encode_ring(&key("t", "n", "z"), 0, &payloads()).expect("encode");
        assert!(matches!(
            decode_ring(&other, &bytes),
            Err(RingFileError::NameMismatch { .. })
        ));
        for cut in [0, 5, MAGIC.len() + 2, bytes.len() - 1] {
            assert!(decode_ring(&name, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode_ring(&name, &longer),
            Err(RingFileError::Body(_))
        ));
        let mut future = bytes;
        future[MAGIC.len() + 1] = 2;
        assert!(matches!(
            decode_ring(&name, &future),
            Err(RingFileError::Header("unknown version"))
        ));
    }

    #[test]
    fn offsets_that_would_overflow_are_refused() {
        let (name, bytes) =
            encode_ring(&key("t", "n", "s"), u64::MAX, &payloads()).expect("encode");
        assert!(matches!(
            decode_ring(&name, &bytes),
            Err(RingFileError::Body(_))
        ));
    }
}
