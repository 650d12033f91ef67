//! A run-time interpreter of the spec: encodes neutral field values (the
//! shape the vectors use) into frame bytes by walking the spec, with no
//! generated code involved.
//!
//! It writes the positive vectors. Because it shares no code with the
//! generated codec, the wire crate's vector tests are a differential test of
//! the two, and the spec examples' literal `json`/`payload_hex` texts are a
//! third, hand-written witness checked here.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::spec::{LayoutDef, MessageDef, Presence, Spec};

/// A frame the interpreter built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Header flags.
    pub flags: u16,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl Encoded {
    /// Header plus payload.
    pub fn frame(&self, spec: &Spec) -> Vec<u8> {
        frame(spec, self.flags, &self.payload)
    }
}

/// Header plus payload.
pub fn frame(spec: &Spec, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spec.header.size + payload.len());
    out.extend_from_slice(&spec.header.magic.to_be_bytes());
    out.extend_from_slice(&spec.header.version.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn hex_bytes(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{what}: expected a hex string"))?;
    hex::decode(s).map_err(|e| format!("{what}: {e}"))
}

/// JSON string escaping as felix-wire writes it: `\" \\ \b \f \n \r \t`,
/// other control characters as `\u00xx`, everything else raw.
pub fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_value(spec: &Spec, ty: &str, v: &Value, what: &str) -> Result<String, String> {
    let b64 = |v: &Value| -> Result<String, String> {
        Ok(json_escape(
            &base64::engine::general_purpose::STANDARD.encode(hex_bytes(v, what)?),
        ))
    };
    match ty {
        "string" => Ok(json_escape(
            v.as_str()
                .ok_or_else(|| format!("{what}: expected a string"))?,
        )),
        "u16" | "u64" => Ok(v
            .as_u64()
            .ok_or_else(|| format!("{what}: expected an integer"))?
            .to_string()),
        "bytes" => b64(v),
        "list<bytes>" => {
            let items = v
                .as_array()
                .ok_or_else(|| format!("{what}: expected a list"))?;
            let parts = items.iter().map(b64).collect::<Result<Vec<_>, _>>()?;
            Ok(format!("[{}]", parts.join(",")))
        }
        name => {
            let e = spec
                .enums
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| format!("{what}: unknown type {name}"))?;
            for var in &e.variants {
                match (v, &var.json, &var.json_object) {
                    (Value::String(s), Some(j), _) if *s == var.name => return Ok(json_escape(j)),
                    (Value::Object(o), _, Some(obj)) => {
                        if let Some(n) = o.get(&obj.key).and_then(Value::as_u64) {
                            return Ok(format!("{{{}:{n}}}", json_escape(&obj.key)));
                        }
                    }
                    _ => {}
                }
            }
            Err(format!("{what}: `{v}` is no JSON value of {name}"))
        }
    }
}

/// Encodes a JSON message from neutral fields.
pub fn encode_message(
    spec: &Spec,
    m: &MessageDef,
    fields: &Map<String, Value>,
) -> Result<Encoded, String> {
    let mut text = format!("{{\"type\":{}", json_escape(&m.name));
    for f in &m.fields {
        let what = format!("{}.{}", m.name, f.name);
        let value = fields.get(&f.name).filter(|v| !v.is_null());
        let rendered = match (value, f.presence) {
            (Some(v), _) => Some(json_value(spec, &f.ty, v, &what)?),
            (None, Presence::Required) => return Err(format!("{what}: required")),
            (None, Presence::Omit) => None,
            (None, Presence::Null | Presence::Nullable) => Some("null".to_string()),
        };
        if let Some(r) = rendered {
            text.push(',');
            text.push_str(&json_escape(&f.name));
            text.push(':');
            text.push_str(&r);
        }
    }
    text.push('}');
    Ok(Encoded {
        flags: 0,
        payload: text.into_bytes(),
    })
}

/// Encodes a binary layout from neutral fields.
pub fn encode_layout(
    spec: &Spec,
    l: &LayoutDef,
    fields: &Map<String, Value>,
) -> Result<Encoded, String> {
    let bit = |name: &str| {
        spec.flags
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.bit)
    };
    let mut out = Vec::new();
    let mut present_modifiers = Vec::new();
    for f in &l.fields {
        let what = format!("{}.{}", l.name, f.name);
        if let Some(list) = &f.count_of {
            let n = fields
                .get(list)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match f.ty.as_str() {
                "u16" => out.extend_from_slice(
                    &u16::try_from(n)
                        .map_err(|_| format!("{what}: too many"))?
                        .to_be_bytes(),
                ),
                _ => out.extend_from_slice(
                    &u32::try_from(n)
                        .map_err(|_| format!("{what}: too many"))?
                        .to_be_bytes(),
                ),
            }
            continue;
        }
        let value = fields.get(&f.name).filter(|v| !v.is_null());
        let value = match (value, &f.present_if) {
            (None, Some(_)) => continue,
            (Some(v), Some(flag)) => {
                present_modifiers.push(flag.clone());
                v
            }
            (Some(v), None) => v,
            (None, None) => return Err(format!("{what}: required")),
        };
        if f.repeat.is_some() {
            for item in value
                .as_array()
                .ok_or_else(|| format!("{what}: expected a list"))?
            {
                put_bin(spec, &mut out, &f.ty, item, &what)?;
            }
        } else {
            put_bin(spec, &mut out, &f.ty, value, &what)?;
        }
    }
    // The combination whose modifiers are exactly those in play.
    let combo = spec
        .combinations
        .iter()
        .filter(|c| c.layout == l.name)
        .find(|c| {
            let conditional: Vec<&String> = l
                .fields
                .iter()
                .filter_map(|f| f.present_if.as_ref())
                .collect();
            conditional
                .iter()
                .all(|flag| c.flags.contains(flag) == present_modifiers.contains(flag))
        })
        .ok_or_else(|| format!("{}: no combination matches the present fields", l.name))?;
    Ok(Encoded {
        flags: combo.flags.iter().map(|n| bit(n)).fold(0, |a, b| a | b),
        payload: out,
    })
}

fn put_bin(spec: &Spec, out: &mut Vec<u8>, ty: &str, v: &Value, what: &str) -> Result<(), String> {
    let int = |v: &Value| {
        v.as_u64()
            .ok_or_else(|| format!("{what}: expected an integer"))
    };
    match ty {
        "u8" => out.push(u8::try_from(int(v)?).map_err(|_| format!("{what}: out of range"))?),
        "u16" => out.extend_from_slice(
            &u16::try_from(int(v)?)
                .map_err(|_| format!("{what}: out of range"))?
                .to_be_bytes(),
        ),
        "u32" => out.extend_from_slice(
            &u32::try_from(int(v)?)
                .map_err(|_| format!("{what}: out of range"))?
                .to_be_bytes(),
        ),
        "u64" => out.extend_from_slice(&int(v)?.to_be_bytes()),
        "str16" => {
            let s = v
                .as_str()
                .ok_or_else(|| format!("{what}: expected a string"))?;
            out.extend_from_slice(
                &u16::try_from(s.len())
                    .map_err(|_| format!("{what}: too long"))?
                    .to_be_bytes(),
            );
            out.extend_from_slice(s.as_bytes());
        }
        "bytes32" => {
            let b = hex_bytes(v, what)?;
            out.extend_from_slice(
                &u32::try_from(b.len())
                    .map_err(|_| format!("{what}: too long"))?
                    .to_be_bytes(),
            );
            out.extend_from_slice(&b);
        }
        name => {
            let e = spec
                .enums
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| format!("{what}: unknown type {name}"))?;
            let byte = e
                .variants
                .iter()
                .find(|var| v.as_str() == Some(var.name.as_str()))
                .and_then(|var| var.byte)
                .ok_or_else(|| format!("{what}: `{v}` has no byte in {name}"))?;
            out.push(byte);
        }
    }
    Ok(())
}

/// The neutral decoded form of a message: every field in spec order, absent
/// ones as null.
pub fn neutral_message(m: &MessageDef, fields: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for f in &m.fields {
        out.insert(
            f.name.clone(),
            fields.get(&f.name).cloned().unwrap_or(Value::Null),
        );
    }
    neutral(0, &m.name, out)
}

/// The neutral decoded form of a layout (count fields are not stored).
pub fn neutral_layout(l: &LayoutDef, flags: u16, fields: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for f in l.fields.iter().filter(|f| f.count_of.is_none()) {
        out.insert(
            f.name.clone(),
            fields.get(&f.name).cloned().unwrap_or(Value::Null),
        );
    }
    neutral(flags, &l.name, out)
}

fn neutral(flags: u16, kind: &str, fields: Map<String, Value>) -> Value {
    let mut v = Map::new();
    v.insert("flags".into(), flags.into());
    v.insert("kind".into(), kind.into());
    v.insert("fields".into(), Value::Object(fields));
    Value::Object(v)
}
