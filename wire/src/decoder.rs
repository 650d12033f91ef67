//! Decoding frames from bytes: a streaming decoder for bytes that arrive in
//! arbitrary pieces, and one-shot decoding of a complete buffer.
//!
//! Like mini-redis's `Frame::check` then `parse`, the decoder first checks
//! the header (which tells how long the frame is) and only then parses,
//! once the whole frame is buffered. "Need more bytes" is `Ok(None)`;
//! every `Err` is final for the stream: the peer sent something invalid and
//! the framing can no longer be trusted.

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::generated::{Frame, DEFAULT_MAX_FRAME_BYTES};
use crate::header::Header;

/// A frame whose header has been checked and whose payload is buffered,
/// but not yet parsed (a broker can route or count it first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The checked header.
    pub header: Header,
    /// The payload, `header.length` bytes.
    pub payload: Bytes,
}

impl RawFrame {
    /// Parses the payload by the header's layout.
    pub fn parse(self) -> Result<Frame, DecodeError> {
        Frame::decode_payload(self.header.flags, self.payload)
    }
}

/// Splits a byte stream into frames.
///
/// ```
/// use bytes::BytesMut;
/// use felix_wire::{Frame, FrameDecoder, Message, OkMessage};
///
/// let bytes = Frame::from(Message::from(OkMessage {})).to_bytes().unwrap();
/// let mut decoder = FrameDecoder::new();
/// let mut buf = BytesMut::new();
/// buf.extend_from_slice(&bytes[..5]);
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None); // need more bytes
/// buf.extend_from_slice(&bytes[5..]);
/// let frame = decoder.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(frame, Frame::Json(Message::Ok(OkMessage {})));
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_bytes: u32,
    consumed: u64,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder with the default cap of 16 MiB per payload.
    pub fn new() -> Self {
        FrameDecoder::with_max_frame_bytes(DEFAULT_MAX_FRAME_BYTES)
    }

    /// A decoder rejecting payloads longer than `max_frame_bytes`.
    pub fn with_max_frame_bytes(max_frame_bytes: u32) -> Self {
        FrameDecoder {
            max_frame_bytes,
            consumed: 0,
        }
    }

    /// The payload cap in force.
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// Changes the payload cap for the frames still to come. A broker
    /// starts a stream with a small cap (an `auth` frame is short, and a
    /// peer not yet authenticated should not make it buffer megabytes)
    /// and raises it once the stream has authenticated.
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: u32) {
        self.max_frame_bytes = max_frame_bytes;
    }

    /// Stream bytes consumed by frames decoded so far: the stream offset of
    /// the next frame, to add to an error's frame-relative offset.
    pub fn stream_offset(&self) -> u64 {
        self.consumed
    }

    /// Takes the next frame off `src` without parsing its payload.
    /// `Ok(None)` means more bytes are needed; nothing is consumed then.
    /// Never allocates: the payload is split off `src`.
    pub fn decode_raw(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, DecodeError> {
        self.take(src, Header::parse)
    }

    /// Like [`Self::decode_raw`] but checks only what framing needs (magic,
    /// version, length cap), not the flags: a broker answers a frame with
    /// unknown flags and reads on, as felix-wire requires.
    pub fn decode_envelope(&mut self, src: &mut BytesMut) -> Result<Option<RawFrame>, DecodeError> {
        self.take(src, Header::parse_envelope)
    }

    fn take(
        &mut self,
        src: &mut BytesMut,
        parse: fn(&[u8], u32) -> Result<Header, DecodeError>,
    ) -> Result<Option<RawFrame>, DecodeError> {
        let header = match parse(src, self.max_frame_bytes) {
            Ok(h) => h,
            Err(e) if e.is_incomplete() => return Ok(None),
            Err(e) => return Err(e),
        };
        if src.len() < header.frame_len() {
            return Ok(None);
        }
        let mut frame = src.split_to(header.frame_len());
        self.consumed += frame.len() as u64;
        let payload = frame.split_off(Header::LEN).freeze();
        Ok(Some(RawFrame { header, payload }))
    }

    /// Takes the next frame off `src` and parses it. `Ok(None)` means more
    /// bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match self.decode_raw(src)? {
            Some(raw) => raw.parse().map(Some),
            None => Ok(None),
        }
    }

    /// How many bytes `src` must hold before [`Self::decode`] can make
    /// progress (a hint for read sizing; never more than header + cap).
    pub fn needed(&self, src: &[u8]) -> usize {
        Self::needed_by(Header::parse, src, self.max_frame_bytes)
    }

    /// [`Self::needed`] for [`Self::decode_envelope`]: a header with
    /// unknown flag bits still announces its frame's length, which a reader
    /// that answers such frames must wait for whole.
    pub fn needed_envelope(&self, src: &[u8]) -> usize {
        Self::needed_by(Header::parse_envelope, src, self.max_frame_bytes)
    }

    fn needed_by(
        parse: fn(&[u8], u32) -> Result<Header, DecodeError>,
        src: &[u8],
        max_frame_bytes: u32,
    ) -> usize {
        match parse(src, max_frame_bytes) {
            Ok(h) => h.frame_len(),
            Err(DecodeError::Incomplete { needed, .. }) => needed,
            Err(_) => src.len(),
        }
    }
}

impl Frame {
    /// Decodes one frame from the start of a complete buffer, with the
    /// default cap. Returns the frame and the bytes after it. A buffer that
    /// ends early gives [`DecodeError::Incomplete`].
    pub fn decode(src: Bytes) -> Result<(Frame, Bytes), DecodeError> {
        Frame::decode_with_max(src, DEFAULT_MAX_FRAME_BYTES)
    }

    /// [`Frame::decode`] with a payload cap.
    pub fn decode_with_max(
        mut src: Bytes,
        max_frame_bytes: u32,
    ) -> Result<(Frame, Bytes), DecodeError> {
        let header = Header::parse(&src, max_frame_bytes)?;
        if src.len() < header.frame_len() {
            return Err(DecodeError::Incomplete {
                needed: header.frame_len(),
                available: src.len(),
            });
        }
        let rest = src.split_off(header.frame_len());
        let payload = src.slice(Header::LEN..);
        Ok((Frame::decode_payload(header.flags, payload)?, rest))
    }

    /// Writes header and payload. Checks everything first, so on error
    /// nothing has been written.
    pub fn encode<B: bytes::BufMut>(&self, dst: &mut B) -> Result<(), EncodeError> {
        self.check()?;
        let len = self.payload_len();
        let length = u32::try_from(len).map_err(|_| EncodeError::PayloadTooLarge { len })?;
        Header {
            flags: self.flags(),
            length,
        }
        .write(dst);
        self.encode_payload(dst);
        Ok(())
    }

    /// Header plus payload in a new buffer of exactly the right size.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::with_capacity(Header::LEN + self.payload_len());
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_with_unknown_flags_still_announces_its_length() {
        // A broker answers such frames once they are whole, so it must know
        // how long they are: `needed` (full header checks) cannot say.
        let mut header = Vec::new();
        Header {
            flags: 0x8000,
            length: 60_000,
        }
        .write(&mut header);
        let decoder = FrameDecoder::new();
        assert_eq!(decoder.needed_envelope(&header), 60_012);
        assert_eq!(decoder.needed(&header), 12, "full checks refuse the flags");
        assert_eq!(decoder.needed_envelope(&header[..5]), 12);
    }
}
