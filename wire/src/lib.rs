//! `felix-wire`: the felix-wire v1 codec.
//!
//! Every frame is a 12-byte header (magic `FLX1`, version, flags, length)
//! and a payload whose layout the flags select: a JSON control message or
//! one of five binary layouts. The types and codecs are generated from
//! `spec/felix-wire.yaml`; a small hand-written runtime does the framing and
//! the byte-level reading and writing.
//!
//! ```
//! use felix_wire::{BinarySharedEventBatch, Frame};
//! use bytes::Bytes;
//!
//! let batch = BinarySharedEventBatch {
//!     base_offset: Some(42),
//!     payloads: vec![Bytes::from_static(b"hello")],
//! };
//! let bytes = Frame::from(batch.clone()).to_bytes()?;
//! assert_eq!(&bytes[..4], b"FLX1");
//! let (frame, rest) = Frame::decode(bytes)?;
//! assert_eq!(frame, Frame::BinarySharedEventBatch(batch));
//! assert!(rest.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Public surface
//!
//! Every public item has one path, at the crate root: the generated types
//! (each message, [`Message`], each binary layout, [`Frame`], [`Layout`],
//! the enums, [`ErrorClass`]) and constants, the runtime's [`FrameDecoder`],
//! [`RawFrame`], [`Header`], [`DecodeError`], [`EncodeError`],
//! [`Direction`] and [`truncate_utf8`]. The modules below are private, as
//! h2 keeps its codec and prost its `encoding`.
//!
//! Each message and layout is a codec with one verb pair, as quinn's `Codec`
//! is: `decode` from a payload, `encode` into a `BufMut`, and `encoded_len`
//! for the exact size (a layout also has `check`, which `encode` expects to
//! have passed). [`Frame`] adds the header: [`Frame::decode`],
//! [`Frame::encode`] and [`Frame::to_bytes`] for whole frames,
//! [`Frame::decode_payload`], [`Frame::encode_payload`] and
//! [`Frame::payload_len`] for the payload alone.
//!
//! The `vectors` feature (off by default; pulls `serde_json` and `hex`) adds
//! the `vectors` module and the `to_neutral`/`from_neutral` methods: the
//! language-neutral JSON form the test vectors use, for tests and
//! conformance tools rather than for peers.
//!
//! # Layout
//!
//! - `generated/` (`@generated`, never edited by hand): constants and flag
//!   bits, enums, one module per JSON message and per binary layout, the
//!   [`Frame`] enum and its payload dispatch, [`ErrorClass`].
//! - `header.rs`: the 12-byte header and its checks, in the spec's order.
//! - `decoder.rs`: [`FrameDecoder`] for streams, [`Frame::decode`] and
//!   [`Frame::encode`] for whole frames.
//! - `json/`: a strict JSON pull reader and byte-exact writers.
//! - `binary.rs`: the cursor and writers for binary layouts (zero-copy).
//! - `error.rs`: [`DecodeError`] (field + byte offset in every variant) and
//!   [`EncodeError`].
//! - `neutral.rs` (feature `vectors`): the language-neutral JSON form the
//!   vectors use.
//! - `vectors.rs` (feature `vectors`): loading the test vectors and
//!   checking a case against this codec.

mod binary;
mod decoder;
mod error;
#[allow(missing_docs)]
mod generated;
mod header;
mod json;
#[cfg(feature = "vectors")]
mod neutral;
#[cfg(feature = "vectors")]
pub mod vectors;

#[cfg(feature = "arbitrary")]
mod arbitrary_support;

pub use binary::truncate_utf8;
pub use decoder::{FrameDecoder, RawFrame};
pub use error::{DecodeError, EncodeError};
pub use generated::*;
pub use header::Header;
/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Who sends a message or layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to broker.
    ClientToBroker,
    /// Broker to client.
    BrokerToClient,
}
