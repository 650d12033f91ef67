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
//! # Layout
//!
//! - [`generated`] (`@generated`, never edited by hand): constants and flag
//!   bits, enums, one module per JSON message and per binary layout, the
//!   [`Frame`] enum and its payload dispatch, [`ErrorClass`].
//! - [`header`]: the 12-byte header and its checks, in the spec's order.
//! - [`decoder`]: [`FrameDecoder`] for streams, [`Frame::decode`] and
//!   [`Frame::encode`] for whole frames.
//! - [`json`]: a strict JSON pull reader and byte-exact writers.
//! - [`binary`]: the cursor and writers for binary layouts (zero-copy).
//! - [`error`]: [`DecodeError`] (field + byte offset in every variant) and
//!   [`EncodeError`].
//! - [`neutral`]: the language-neutral JSON form the vectors use.
//! - [`vectors`]: loading the test vectors and checking a case against
//!   this codec.

pub mod binary;
pub mod decoder;
pub mod error;
#[allow(missing_docs)]
pub mod generated;
pub mod header;
pub mod json;
pub mod neutral;
pub mod vectors;

#[cfg(feature = "arbitrary")]
pub mod arbitrary_support;

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
