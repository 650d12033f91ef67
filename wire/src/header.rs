//! The 12-byte frame header and the checks made on it before any payload
//! byte is read or allocated.

use bytes::BufMut;

use crate::error::DecodeError;
use crate::generated::{Layout, HEADER_LEN, KNOWN_FLAGS, MAGIC, VERSION};

/// A checked frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The flags field; a valid combination unless parsed as an envelope.
    pub flags: u16,
    /// Payload length; always within the cap it was checked against.
    pub length: u32,
}

impl Header {
    /// Size of the header in bytes.
    pub const LEN: usize = HEADER_LEN;

    /// Parses and checks the header at the start of `src`, in the order the
    /// spec fixes: whole header present, magic, version, unknown flag bits,
    /// flag combination, then `length` against `max_frame_bytes`. Payload
    /// bytes are not looked at.
    pub fn parse(src: &[u8], max_frame_bytes: u32) -> Result<Header, DecodeError> {
        Header::parse_inner(src, max_frame_bytes, true)
    }

    /// Like [`Header::parse`] but leaves the flags unchecked: magic,
    /// version and length are what framing needs, so a receiver can answer
    /// a frame with unknown flag bits and go on with the next one (the
    /// flags are checked again when the payload is parsed).
    pub fn parse_envelope(src: &[u8], max_frame_bytes: u32) -> Result<Header, DecodeError> {
        Header::parse_inner(src, max_frame_bytes, false)
    }

    fn parse_inner(
        src: &[u8],
        max_frame_bytes: u32,
        check_flags: bool,
    ) -> Result<Header, DecodeError> {
        let Some(head) = src.get(..HEADER_LEN) else {
            return Err(DecodeError::Incomplete {
                needed: HEADER_LEN,
                available: src.len(),
            });
        };
        let be32 = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let be16 = |i: usize| u16::from_be_bytes([head[i], head[i + 1]]);
        let magic = be32(0);
        if magic != MAGIC {
            return Err(DecodeError::BadMagic { found: magic });
        }
        let version = be16(4);
        if version != VERSION {
            return Err(DecodeError::BadVersion { found: version });
        }
        let flags = be16(6);
        if check_flags && flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::UnknownFlags {
                flags,
                unknown: flags & !KNOWN_FLAGS,
            });
        }
        if check_flags && Layout::for_flags(flags).is_none() {
            return Err(DecodeError::InvalidFlagCombination { flags });
        }
        let length = be32(8);
        if length > max_frame_bytes {
            return Err(DecodeError::FrameTooLarge {
                length,
                max: max_frame_bytes,
            });
        }
        Ok(Header { flags, length })
    }

    /// Total frame size: header plus payload.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.length as usize
    }

    /// Writes a header.
    pub fn write<B: BufMut>(&self, dst: &mut B) {
        dst.put_u32(MAGIC);
        dst.put_u16(VERSION);
        dst.put_u16(self.flags);
        dst.put_u32(self.length);
    }
}
