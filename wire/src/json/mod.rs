//! JSON payloads (flags 0): a strict pull reader and byte-exact writers.
//!
//! The generated message codecs call these; nothing here knows a message.

pub mod read;
pub mod write;

pub use read::JsonReader;
pub use write::*;
