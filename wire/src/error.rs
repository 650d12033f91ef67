//! The decode and encode errors.
//!
//! [`DecodeError`] is one flat enum: every way bytes can be wrong, each
//! variant naming the field (`message.field` or `layout.field`) and the byte
//! offset from the start of the frame (the header's first byte is offset 0,
//! the payload starts at 12). [`DecodeError::class`] maps each variant to the
//! language-neutral [`ErrorClass`] the test vectors use.
//!
//! "Need more bytes" is its own variant, [`DecodeError::Incomplete`]: a
//! streaming reader waits on it, everything else is final.

use crate::generated::ErrorClass;

/// Why bytes could not be decoded as a felix-wire frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the frame does: `needed` bytes in total are
    /// required (the header, or header plus the announced payload).
    #[error("incomplete frame: {needed} bytes needed, {available} available")]
    Incomplete {
        /// Total bytes the frame needs from its first byte.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The magic at offset 0 is not `FLX1`.
    #[error("header.magic at byte 0: expected 0x464c5831 (\"FLX1\"), found {found:#010x}")]
    BadMagic {
        /// The four bytes read.
        found: u32,
    },
    /// The version at offset 4 is not 1.
    #[error("header.version at byte 4: expected 1, found {found}")]
    BadVersion {
        /// The version read.
        found: u16,
    },
    /// A flag bit outside the known set is set (offset 6).
    #[error("header.flags at byte 6: unknown flag bits {unknown:#06x} in {flags:#06x}")]
    UnknownFlags {
        /// The whole flags field.
        flags: u16,
        /// The bits no flag defines.
        unknown: u16,
    },
    /// Known bits, but not a valid combination (offset 6).
    #[error("header.flags at byte 6: {flags:#06x} is not a valid flag combination")]
    InvalidFlagCombination {
        /// The flags field.
        flags: u16,
    },
    /// The length at offset 8 exceeds the receiver's cap.
    #[error("header.length at byte 8: {length} bytes exceeds the frame cap of {max}")]
    FrameTooLarge {
        /// Announced payload length.
        length: u32,
        /// The cap in force.
        max: u32,
    },
    /// A field of a binary payload runs past the payload's end.
    #[error(
        "{field} at byte {offset}: needs {needed} bytes, only {available} remain in the payload"
    )]
    UnexpectedEnd {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left in the payload.
        available: usize,
    },
    /// A count announces more items than the remaining bytes could hold.
    #[error(
        "{field} at byte {offset}: count {count} exceeds what {remaining} remaining bytes can hold"
    )]
    CountTooLarge {
        /// The count field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// The count read.
        count: u32,
        /// Payload bytes after the count.
        remaining: usize,
    },
    /// Bytes remain after the last field of a binary payload.
    #[error("{layout} at byte {offset}: {count} trailing bytes after the last field")]
    TrailingBytes {
        /// The layout.
        layout: &'static str,
        /// Offset of the first extra byte.
        offset: usize,
        /// How many extra bytes.
        count: usize,
    },
    /// A string is not valid UTF-8.
    #[error("{field} at byte {offset}: invalid UTF-8")]
    InvalidUtf8 {
        /// The string field (`json` for a whole JSON payload).
        field: &'static str,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A binary enum byte has no defined value.
    #[error("{field} at byte {offset}: {value} is not a defined value")]
    InvalidEnumByte {
        /// The field.
        field: &'static str,
        /// Where it is.
        offset: usize,
        /// The byte read.
        value: u8,
    },
    /// The JSON payload is not well-formed JSON (or not one object).
    #[error("json at byte {offset}: {reason}")]
    MalformedJson {
        /// Where parsing stopped.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The JSON `type` names no message.
    #[error("json.type at byte {offset}: unknown message type {found:?}")]
    UnknownType {
        /// Where the type value starts.
        offset: usize,
        /// The type read (at most 64 bytes of it).
        found: String,
    },
    /// A required JSON field is absent.
    #[error("{field}: missing (object starts at byte {offset})")]
    MissingField {
        /// The field.
        field: &'static str,
        /// Where the object starts.
        offset: usize,
    },
    /// A known JSON field appears twice.
    #[error("{field} at byte {offset}: given twice")]
    DuplicateField {
        /// The field.
        field: &'static str,
        /// Where the second key starts.
        offset: usize,
    },
    /// A JSON field has the wrong JSON type.
    #[error("{field} at byte {offset}: expected {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// Where the value starts.
        offset: usize,
        /// What was expected.
        expected: &'static str,
    },
    /// A JSON number does not fit its field.
    #[error("{field} at byte {offset}: number out of range for {ty}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Where the value starts.
        offset: usize,
        /// The field's type.
        ty: &'static str,
    },
    /// A JSON enum value is not defined.
    #[error("{field} at byte {offset}: not a valid {ty}")]
    InvalidEnumValue {
        /// The field.
        field: &'static str,
        /// Where the value starts.
        offset: usize,
        /// The enum.
        ty: &'static str,
    },
    /// A byte field is not canonical padded standard base64.
    #[error("{field} at byte {offset}: not canonical padded standard base64")]
    InvalidBase64 {
        /// The field.
        field: &'static str,
        /// Where the string value starts.
        offset: usize,
    },
}

impl DecodeError {
    /// The language-neutral class of this error, as named in the vectors.
    pub fn class(&self) -> ErrorClass {
        match self {
            DecodeError::Incomplete { .. } => ErrorClass::Incomplete,
            DecodeError::BadMagic { .. } => ErrorClass::BadMagic,
            DecodeError::BadVersion { .. } => ErrorClass::BadVersion,
            DecodeError::UnknownFlags { .. } => ErrorClass::UnknownFlags,
            DecodeError::InvalidFlagCombination { .. } => ErrorClass::InvalidFlagCombination,
            DecodeError::FrameTooLarge { .. } => ErrorClass::FrameTooLarge,
            DecodeError::UnexpectedEnd { .. } => ErrorClass::UnexpectedEnd,
            DecodeError::CountTooLarge { .. } => ErrorClass::CountTooLarge,
            DecodeError::TrailingBytes { .. } => ErrorClass::TrailingBytes,
            DecodeError::InvalidUtf8 { .. } => ErrorClass::InvalidUtf8,
            DecodeError::InvalidEnumByte { .. } => ErrorClass::InvalidEnumByte,
            DecodeError::MalformedJson { .. } => ErrorClass::MalformedJson,
            DecodeError::UnknownType { .. } => ErrorClass::UnknownType,
            DecodeError::MissingField { .. } => ErrorClass::MissingField,
            DecodeError::DuplicateField { .. } => ErrorClass::DuplicateField,
            DecodeError::WrongType { .. } => ErrorClass::WrongType,
            DecodeError::OutOfRange { .. } => ErrorClass::OutOfRange,
            DecodeError::InvalidEnumValue { .. } => ErrorClass::InvalidEnumValue,
            DecodeError::InvalidBase64 { .. } => ErrorClass::InvalidBase64,
        }
    }

    /// True when more input could still make the frame decodable.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete { .. })
    }
}

/// Why a frame could not be encoded. Nothing is written when encoding fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A `str16` field is longer than 65,535 bytes.
    #[error("{field}: {len} bytes does not fit a u16 length")]
    StringTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A `bytes32` item is longer than 2^32-1 bytes.
    #[error("{field}: an item of {len} bytes does not fit a u32 length")]
    ItemTooLong {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A list has more items than its count field can hold.
    #[error("{field}: {count} items do not fit its count field")]
    TooManyItems {
        /// The list field.
        field: &'static str,
        /// Number of items.
        count: usize,
    },
    /// A value has no wire form in this layout (e.g. ack mode `none` in a
    /// binary acked batch).
    #[error("{field}: {value} cannot be written in this layout")]
    NotRepresentable {
        /// The field.
        field: &'static str,
        /// The value.
        value: &'static str,
    },
    /// The payload is longer than the u32 length field can announce.
    #[error("payload of {len} bytes does not fit the u32 length field")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
    },
}
