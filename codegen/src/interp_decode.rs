//! The run-time interpreter's decoder: bytes to the neutral form by walking
//! the spec, sharing no code with the generated codec or its runtime.
//!
//! It exists for differential testing (the `differential` fuzz target): the
//! generated codec and this interpreter must agree on whether input is
//! accepted and, when it is, on the decoded value. Error classes are
//! reported too, but the two may legitimately find different problems first
//! in input with several.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::spec::{LayoutDef, MessageDef, Presence, Spec};

/// A decode failure: the error class and a reason.
pub type Failure = (&'static str, String);

fn fail<T>(class: &'static str, why: impl Into<String>) -> Result<T, Failure> {
    Err((class, why.into()))
}

/// A parsed JSON value that keeps what the codec's rules need: key order
/// and duplicates, and the text of numbers.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool,
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn bad<T>(&self, why: &str) -> Result<T, Failure> {
        fail("malformed_json", format!("{why} at {}", self.i))
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// `depth` counts the containers open around this value.
    fn value(&mut self, depth: usize) -> Result<J, Failure> {
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') | Some(b'[') if depth + 1 > self.max_depth => self.bad("too deep"),
            Some(b'{') => {
                self.i += 1;
                let mut pairs = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(J::Obj(pairs));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.bad("key");
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.bad("colon");
                    }
                    self.i += 1;
                    pairs.push((k, self.value(depth + 1)?));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(J::Obj(pairs));
                        }
                        _ => return self.bad("object"),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(J::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(J::Arr(items));
                        }
                        _ => return self.bad("array"),
                    }
                }
            }
            Some(b'"') => self.string().map(J::Str),
            Some(b't') if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(J::Bool)
            }
            Some(b'f') if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(J::Bool)
            }
            Some(b'n') if self.b[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(J::Null)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.bad("value"),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<J, Failure> {
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.bad("number"),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.bad("fraction");
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.bad("exponent");
            }
        }
        Ok(J::Num(
            String::from_utf8_lossy(&self.b[start..self.i]).into_owned(),
        ))
    }

    fn hex4(&mut self) -> Result<u32, Failure> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .ok_or(("malformed_json", "escape".to_string()))?;
        let s = std::str::from_utf8(h).map_err(|_| ("malformed_json", "escape".to_string()))?;
        if !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return self.bad("escape");
        }
        self.i += 4;
        u32::from_str_radix(s, 16).map_err(|_| ("malformed_json", "escape".to_string()))
    }

    fn string(&mut self) -> Result<String, Failure> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return self.bad("unterminated");
            };
            self.i += 1;
            match c {
                b'"' => {
                    return String::from_utf8(out)
                        .map_err(|_| ("invalid_utf8", "string".to_string()))
                }
                0..=0x1f => return self.bad("control character"),
                b'\\' => {
                    let Some(&e) = self.b.get(self.i) else {
                        return self.bad("escape");
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return self.bad("surrogate");
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.bad("surrogate");
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return self.bad("surrogate");
                            } else {
                                hi
                            };
                            char::from_u32(cp)
                                .ok_or(("malformed_json", "code point".to_string()))?
                        }
                        _ => return self.bad("escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

fn uint(v: &J, what: &str, max: u64) -> Result<u64, Failure> {
    match v {
        J::Num(t) if t.contains(['.', 'e', 'E']) => {
            fail("wrong_type", format!("{what}: not an integer"))
        }
        J::Num(t) if t == "-0" => Ok(0),
        J::Num(t) if t.starts_with('-') => fail("out_of_range", format!("{what}: negative")),
        J::Num(t) => match t.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => fail("out_of_range", format!("{what}: too large")),
        },
        _ => fail("wrong_type", format!("{what}: expected a number")),
    }
}

fn b64(v: &J, what: &str) -> Result<Value, Failure> {
    match v {
        J::Str(s) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(|b| Value::from(hex::encode(b)))
            .map_err(|_| ("invalid_base64", what.to_string())),
        _ => fail("wrong_type", format!("{what}: expected a string")),
    }
}

fn json_field(spec: &Spec, ty: &str, v: &J, what: &str) -> Result<Value, Failure> {
    match ty {
        "string" => match v {
            J::Str(s) => Ok(Value::from(s.clone())),
            _ => fail("wrong_type", format!("{what}: expected a string")),
        },
        "u16" => uint(v, what, u64::from(u16::MAX)).map(Value::from),
        "u64" => uint(v, what, u64::MAX).map(Value::from),
        "bytes" => b64(v, what),
        "list<bytes>" => match v {
            J::Arr(items) => items
                .iter()
                .map(|i| b64(i, what))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            _ => fail("wrong_type", format!("{what}: expected an array")),
        },
        name => {
            let Some(e) = spec.enums.iter().find(|e| e.name == name) else {
                return fail("wrong_type", format!("{what}: unknown type {name}"));
            };
            match v {
                J::Str(s) => e
                    .variants
                    .iter()
                    .find(|var| var.json.as_deref() == Some(s.as_str()))
                    .map(|var| Value::from(var.name.clone()))
                    .ok_or(("invalid_enum_value", format!("{what}: {s}"))),
                J::Obj(pairs) if e.variants.iter().any(|var| var.json_object.is_some()) => {
                    for var in &e.variants {
                        if let Some(obj) = &var.json_object {
                            let found: Vec<&J> = pairs
                                .iter()
                                .filter(|(k, _)| *k == obj.key)
                                .map(|(_, v)| v)
                                .collect();
                            return match found[..] {
                                [] => fail("missing_field", format!("{what}.{}", obj.key)),
                                [one] => {
                                    let mut m = Map::new();
                                    m.insert(
                                        obj.key.clone(),
                                        Value::from(uint(one, what, u64::MAX)?),
                                    );
                                    Ok(Value::Object(m))
                                }
                                _ => fail("duplicate_field", format!("{what}.{}", obj.key)),
                            };
                        }
                    }
                    fail("wrong_type", what.to_string())
                }
                _ => fail("wrong_type", format!("{what}: expected a {name}")),
            }
        }
    }
}

fn decode_message(spec: &Spec, m: &MessageDef, pairs: &[(String, J)]) -> Result<Value, Failure> {
    let mut fields = Map::new();
    for f in &m.fields {
        let what = format!("{}.{}", m.name, f.name);
        let found: Vec<&J> = pairs
            .iter()
            .filter(|(k, _)| *k == f.name)
            .map(|(_, v)| v)
            .collect();
        let value = match (found.as_slice(), f.presence) {
            ([_, _, ..], _) => return fail("duplicate_field", what),
            ([], Presence::Required | Presence::Nullable) => return fail("missing_field", what),
            ([], _) => Value::Null,
            ([J::Null], Presence::Required) => return fail("wrong_type", format!("{what}: null")),
            ([J::Null], _) => Value::Null,
            ([v], _) => json_field(spec, &f.ty, v, &what)?,
        };
        fields.insert(f.name.clone(), value);
    }
    Ok(neutral(0, &m.name, fields))
}

fn decode_json(spec: &Spec, payload: &[u8]) -> Result<Value, Failure> {
    if std::str::from_utf8(payload).is_err() {
        return fail("invalid_utf8", "payload");
    }
    let max_depth = spec
        .limits
        .iter()
        .find(|l| l.name == "json_max_depth")
        .map_or(64, |l| l.value as usize);
    let mut p = Parser {
        b: payload,
        i: 0,
        max_depth,
    };
    p.ws();
    if p.b.get(p.i) != Some(&b'{') {
        return p.bad("not an object");
    }
    let J::Obj(pairs) = p.value(0)? else {
        return p.bad("not an object");
    };
    p.ws();
    if p.i != p.b.len() {
        return p.bad("trailing data");
    }
    let ty = match pairs.iter().find(|(k, _)| k == "type") {
        None => return fail("missing_field", "type"),
        Some((_, J::Str(t))) => t.clone(),
        Some(_) => return fail("wrong_type", "type"),
    };
    if pairs.iter().filter(|(k, _)| k == "type").count() > 1 {
        return fail("duplicate_field", "type");
    }
    let m = spec
        .messages
        .iter()
        .find(|m| m.name == ty)
        .ok_or(("unknown_type", ty.clone()))?;
    decode_message(spec, m, &pairs)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], Failure> {
        let end = self
            .i
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(("unexpected_end", what.to_string()))?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }

    fn int(&mut self, n: usize, what: &str) -> Result<u64, Failure> {
        Ok(self
            .take(n, what)?
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b)))
    }
}

fn int_size(ty: &str) -> Option<usize> {
    match ty {
        "u8" => Some(1),
        "u16" => Some(2),
        "u32" => Some(4),
        "u64" => Some(8),
        _ => None,
    }
}

fn decode_layout(spec: &Spec, l: &LayoutDef, flags: u16, payload: &[u8]) -> Result<Value, Failure> {
    let bit = |name: &str| {
        spec.flags
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.bit)
    };
    let mut c = Cursor { b: payload, i: 0 };
    let mut counts: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut fields = Map::new();
    for f in &l.fields {
        let what = format!("{}.{}", l.name, f.name);
        if let Some(p) = &f.present_if {
            if flags & bit(p) == 0 {
                fields.insert(f.name.clone(), Value::Null);
                continue;
            }
        }
        if f.count_of.is_some() {
            let size = int_size(&f.ty).unwrap_or(4);
            let n = c.int(size, &what)?;
            if n > ((payload.len() - c.i) / 4) as u64 {
                return fail("count_too_large", what);
            }
            counts.insert(f.name.as_str(), n);
            continue;
        }
        let one = |c: &mut Cursor<'_>| -> Result<Value, Failure> {
            if let Some(size) = int_size(&f.ty) {
                return c.int(size, &what).map(Value::from);
            }
            match f.ty.as_str() {
                "str16" => {
                    let n = c.int(2, &what)? as usize;
                    let raw = c.take(n, &what)?;
                    std::str::from_utf8(raw)
                        .map(Value::from)
                        .map_err(|_| ("invalid_utf8", what.clone()))
                }
                "bytes32" => {
                    let n = c.int(4, &what)? as usize;
                    Ok(Value::from(hex::encode(c.take(n, &what)?)))
                }
                name => {
                    let byte = c.int(1, &what)? as u8;
                    spec.enums
                        .iter()
                        .find(|e| e.name == name)
                        .and_then(|e| e.variants.iter().find(|v| v.byte == Some(byte)))
                        .map(|v| Value::from(v.name.clone()))
                        .ok_or(("invalid_enum_byte", what.clone()))
                }
            }
        };
        let value = match &f.repeat {
            Some(count) => {
                let n = counts.get(count.as_str()).copied().unwrap_or(0);
                Value::Array((0..n).map(|_| one(&mut c)).collect::<Result<Vec<_>, _>>()?)
            }
            None => one(&mut c)?,
        };
        fields.insert(f.name.clone(), value);
    }
    if c.i != payload.len() {
        return fail("trailing_bytes", l.name.clone());
    }
    Ok(neutral(flags, &l.name, fields))
}

fn neutral(flags: u16, kind: &str, fields: Map<String, Value>) -> Value {
    let mut v = Map::new();
    v.insert("flags".into(), flags.into());
    v.insert("kind".into(), kind.into());
    v.insert("fields".into(), Value::Object(fields));
    Value::Object(v)
}

/// Decodes exactly one frame (bytes after it are ignored) with the
/// receiver cap `max_frame_bytes`, following the spec's check order.
pub fn decode(spec: &Spec, data: &[u8], max_frame_bytes: u32) -> Result<Value, Failure> {
    let size = spec.header.size;
    if data.len() < size {
        return fail("incomplete", "header");
    }
    let be = |r: std::ops::Range<usize>| data[r].iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    if be(0..4) != u64::from(spec.header.magic) {
        return fail("bad_magic", "magic");
    }
    if be(4..6) != u64::from(spec.header.version) {
        return fail("bad_version", "version");
    }
    let flags = be(6..8) as u16;
    if flags & !spec.known_flags != 0 {
        return fail("unknown_flags", format!("{flags:#06x}"));
    }
    let bit = |name: &str| {
        spec.flags
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.bit)
    };
    let combo = spec
        .combinations
        .iter()
        .find(|c| c.flags.iter().map(|n| bit(n)).fold(0, |a, b| a | b) == flags)
        .ok_or(("invalid_flag_combination", format!("{flags:#06x}")))?;
    let length = be(8..12);
    if length > u64::from(max_frame_bytes) {
        return fail("frame_too_large", length.to_string());
    }
    let end = size + length as usize;
    if data.len() < end {
        return fail("incomplete", "payload");
    }
    let payload = &data[size..end];
    if combo.layout == "json" {
        return decode_json(spec, payload);
    }
    let l = spec
        .layouts
        .iter()
        .find(|l| l.name == combo.layout)
        .ok_or(("invalid_flag_combination", combo.layout.clone()))?;
    decode_layout(spec, l, flags, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        let path = crate::workspace_root().join(crate::SPEC_PATH);
        let text = std::fs::read_to_string(&path).expect("spec");
        crate::parse_spec(crate::SPEC_PATH, &text).expect("valid spec")
    }

    #[test]
    fn agrees_with_every_vector() {
        let spec = spec();
        let dir = crate::workspace_root().join("vectors");
        let mut checked = 0;
        for entry in walk(&dir) {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&entry).expect("read"))
                .expect("json");
            for t in doc["testGroups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["tests"].as_array().into_iter().flatten())
            {
                let bytes = hex::decode(
                    t["frame"]
                        .as_str()
                        .expect("frame")
                        .split_whitespace()
                        .collect::<String>(),
                )
                .expect("hex");
                let cap = t
                    .get("maxFrameBytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(16_777_216) as u32;
                let got = decode(&spec, &bytes, cap);
                match t["result"].as_str() {
                    Some("valid") => assert_eq!(
                        got.as_ref().ok(),
                        Some(&t["decoded"]),
                        "{}: {got:?}",
                        t["id"]
                    ),
                    _ => assert_eq!(
                        got.as_ref().err().map(|e| e.0),
                        t["errorClass"].as_str(),
                        "{}: {got:?}",
                        t["id"]
                    ),
                }
                checked += 1;
            }
        }
        assert!(checked > 100);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("dir").flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("schema") {
                out.extend(walk(&p));
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
        out
    }
}
