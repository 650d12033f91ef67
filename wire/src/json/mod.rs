//! JSON payloads (flags 0): a strict pull reader and byte-exact writers.
//!
//! The generated message codecs call these; nothing here knows a message.

mod read;
mod write;

pub(crate) use read::JsonReader;
pub(crate) use write::*;
