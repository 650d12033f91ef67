//! The neutral JSON form of frames used by the test vectors and the
//! conformance tools: `{"flags": N, "kind": "...", "fields": {...}}`, with
//! byte values as lowercase hex and absent fields as `null`.
//!
//! The generated `to_neutral`/`from_neutral` methods call these helpers.

use bytes::Bytes;
use serde_json::{Map, Value};

/// Why a neutral value does not describe a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct NeutralError {
    /// The field at fault.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl NeutralError {
    /// A new error.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        NeutralError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

type Result<T> = std::result::Result<T, NeutralError>;

/// Builds `{"flags", "kind", "fields"}`.
pub(crate) fn frame(flags: u16, kind: &str, fields: Map<String, Value>) -> Value {
    let mut v = Map::new();
    v.insert("flags".into(), flags.into());
    v.insert("kind".into(), kind.into());
    v.insert("fields".into(), Value::Object(fields));
    Value::Object(v)
}

/// Splits `{"flags", "kind", "fields"}`.
pub(crate) fn split_frame(v: &Value) -> Result<(u16, &str, &Map<String, Value>)> {
    let flags = uint(v.get("flags").unwrap_or(&Value::Null), "flags", u16::MAX)?;
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| NeutralError::new("kind", "expected a string"))?;
    let fields = v
        .get("fields")
        .and_then(Value::as_object)
        .ok_or_else(|| NeutralError::new("fields", "expected an object"))?;
    Ok((flags, kind, fields))
}

/// A field that is present and not null.
pub(crate) fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

/// A field that must be present and not null.
pub(crate) fn required<'a>(
    fields: &'a Map<String, Value>,
    qualified: &str,
    name: &str,
) -> Result<&'a Value> {
    field(fields, name).ok_or_else(|| NeutralError::new(qualified, "required"))
}

/// A string value.
pub(crate) fn string(v: &Value, field: &str) -> Result<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| NeutralError::new(field, "expected a string"))
}

/// An unsigned integer no larger than `max`.
pub(crate) fn uint<T: TryFrom<u64>>(v: &Value, field: &str, max: T) -> Result<T> {
    let _ = max;
    v.as_u64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| NeutralError::new(field, "expected an unsigned integer in range"))
}

/// An unsigned integer field as a JSON number.
pub(crate) fn uint_value<T: Copy + Into<u64>>(n: &T) -> Value {
    Value::from((*n).into())
}

/// Bytes from a hex string.
pub(crate) fn bytes(v: &Value, field: &str) -> Result<Bytes> {
    let s = v
        .as_str()
        .ok_or_else(|| NeutralError::new(field, "expected a hex string"))?;
    hex::decode(s)
        .map(Bytes::from)
        .map_err(|e| NeutralError::new(field, format!("invalid hex: {e}")))
}

/// A list of byte values from hex strings.
pub(crate) fn bytes_list(v: &Value, field: &str) -> Result<Vec<Bytes>> {
    v.as_array()
        .ok_or_else(|| NeutralError::new(field, "expected a list of hex strings"))?
        .iter()
        .map(|item| bytes(item, field))
        .collect()
}

/// Bytes as a hex string value.
pub(crate) fn hex(b: &[u8]) -> Value {
    Value::from(hex::encode(b))
}

/// A list of byte values as hex strings.
pub(crate) fn hex_list(items: &[Bytes]) -> Value {
    Value::Array(items.iter().map(|b| hex(b)).collect())
}
