//! A strict, allocation-light JSON reader for felix-wire control messages.
//!
//! Why not `serde_json`: the generated decoders need byte offsets and field
//! names in every error, strict canonical base64 on byte fields, and a
//! bounded nesting depth for values they skip. A pull reader over the
//! already UTF-8-validated payload gives all three and decodes straight into
//! the message structs: strings without escapes are copied once, keys are
//! compared in place, unknown values are skipped without building anything.
//!
//! Grammar is RFC 8259: no comments, no trailing commas, no leading zeros,
//! no raw control characters in strings, surrogate pairs must pair up.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;

use crate::error::DecodeError;
use crate::generated::JSON_MAX_DEPTH;

/// A pull reader over one JSON payload.
#[derive(Debug, Clone)]
pub(crate) struct JsonReader<'a> {
    src: &'a str,
    pos: usize,
    /// Frame offset of `src[0]`, added to every reported offset.
    base: usize,
    /// Containers open around the current position (the top-level object
    /// counts as 1); bounded by the spec's `json_max_depth`.
    depth: u32,
}

type Result<T> = std::result::Result<T, DecodeError>;

impl<'a> JsonReader<'a> {
    /// A reader over `src`, whose first byte sits at frame offset `base`.
    pub(crate) fn new(src: &'a str, base: usize) -> Self {
        JsonReader {
            src,
            pos: 0,
            base,
            depth: 0,
        }
    }

    /// Frame offset of the next unread byte.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn malformed(&self, reason: &'static str) -> DecodeError {
        DecodeError::MalformedJson {
            offset: self.offset(),
            reason,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes().get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.malformed(reason))
        }
    }

    /// Consumes the `{` that opens an object.
    pub(crate) fn begin_object(&mut self) -> Result<()> {
        self.expect(b'{', "expected '{' to open an object")?;
        self.enter()
    }

    /// Counts one more open container; too many is malformed input (this
    /// bounds the stack a hostile payload can make the skipper use).
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > JSON_MAX_DEPTH {
            return Err(self.malformed("nesting deeper than the limit"));
        }
        Ok(())
    }

    /// The next key of the current object and its `:`; `None` after the
    /// closing `}`. `first` is true for the first call on an object.
    pub(crate) fn next_key(&mut self, first: &mut bool) -> Result<Option<(Cow<'a, str>, usize)>> {
        match self.peek() {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.skip_ws();
            }
            _ if *first => {}
            _ => return Err(self.malformed("expected ',' or '}' after a value")),
        }
        *first = false;
        if self.peek() != Some(b'"') {
            return Err(self.malformed("expected a string key"));
        }
        let at = self.offset();
        let key = self.string_raw()?;
        self.expect(b':', "expected ':' after a key")?;
        Ok(Some((key, at)))
    }

    /// Requires that only whitespace follows the top-level value.
    pub(crate) fn end(&mut self) -> Result<()> {
        if self.peek().is_some() {
            return Err(self.malformed("unexpected data after the JSON object"));
        }
        Ok(())
    }

    /// Consumes `null` if it is next; tells whether it was.
    pub(crate) fn take_null(&mut self) -> Result<bool> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &'static str) -> Result<()> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.malformed("invalid literal"))
        }
    }

    /// Skips one value of any type, bounded by the spec's nesting depth.
    pub(crate) fn skip_value(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'{') => {
                self.begin_object()?;
                let mut first = true;
                while self.next_key(&mut first)?.is_some() {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'[') => {
                self.pos += 1;
                self.enter()?;
                let mut first = true;
                while self.next_item(&mut first)? {
                    self.skip_value()?;
                }
                Ok(())
            }
            Some(b'"') => self.string_raw().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(_) => Err(self.malformed("expected a value")),
            None => Err(self.malformed("unexpected end of JSON")),
        }
    }

    /// Moves to the next item of an array; false after the closing `]`.
    pub(crate) fn next_item(&mut self, first: &mut bool) -> Result<bool> {
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(false);
            }
            Some(b',') if !*first => self.pos += 1,
            _ if *first => {}
            _ => return Err(self.malformed("expected ',' or ']' after an item")),
        }
        *first = false;
        Ok(true)
    }

    /// Scans a number; returns its text. Validates RFC 8259 syntax.
    fn number(&mut self) -> Result<&'a str> {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = b.get(i) {
                    i += 1;
                }
            }
            _ => return Err(self.malformed("invalid number")),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == digits {
                return Err(self.malformed("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let digits = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == digits {
                return Err(self.malformed("invalid number"));
            }
        }
        self.pos = i;
        Ok(&self.src[start..i])
    }

    /// Reads a string value, unescaping; borrowed when it has no escapes.
    fn string_raw(&mut self) -> Result<Cow<'a, str>> {
        // Caller has seen the opening quote via peek().
        self.pos += 1;
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        loop {
            match b.get(i) {
                None => {
                    self.pos = i;
                    return Err(self.malformed("unterminated string"));
                }
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(&self.src[start..i]));
                }
                Some(b'\\') => break,
                Some(0x00..=0x1f) => {
                    self.pos = i;
                    return Err(self.malformed("raw control character in a string"));
                }
                Some(_) => i += 1,
            }
        }
        // Slow path: escapes present.
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(&self.src[start..i]);
        loop {
            match b.get(i) {
                None => {
                    self.pos = i;
                    return Err(self.malformed("unterminated string"));
                }
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos = i;
                    let esc = b.get(i + 1).copied();
                    i += 2;
                    match esc {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let hi = self.hex4(i)?;
                            i += 4;
                            let ch = match hi {
                                0xD800..=0xDBFF => {
                                    if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                                        return Err(self.malformed("unpaired surrogate escape"));
                                    }
                                    let lo = self.hex4(i + 2)?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return Err(self.malformed("unpaired surrogate escape"));
                                    }
                                    i += 6;
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                }
                                0xDC00..=0xDFFF => {
                                    return Err(self.malformed("unpaired surrogate escape"))
                                }
                                cp => cp,
                            };
                            match char::from_u32(ch) {
                                Some(c) => out.push(c),
                                None => return Err(self.malformed("invalid unicode escape")),
                            }
                        }
                        _ => return Err(self.malformed("invalid escape")),
                    }
                }
                Some(0x00..=0x1f) => {
                    self.pos = i;
                    return Err(self.malformed("raw control character in a string"));
                }
                Some(_) => {
                    // Copy the run up to the next quote, backslash or control byte.
                    let run = b[i..]
                        .iter()
                        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                        .unwrap_or(b.len() - i);
                    out.push_str(&self.src[i..i + run]);
                    i += run;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> Result<u32> {
        let digits = self
            .bytes()
            .get(at..at + 4)
            .ok_or_else(|| self.malformed("truncated unicode escape"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.malformed("invalid unicode escape")),
            };
            v = v * 16 + u32::from(n);
        }
        Ok(v)
    }

    /// Reads a string field.
    pub(crate) fn read_str(&mut self, field: &'static str) -> Result<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            self.check_value_then(field, "a string")?;
        }
        self.string_raw()
    }

    /// Reads a string field into an owned `String`.
    pub(crate) fn read_string(&mut self, field: &'static str) -> Result<String> {
        self.read_str(field).map(Cow::into_owned)
    }

    /// A value of the wrong type is next: report malformed JSON if it is not
    /// even a value, else a type error naming what was expected.
    fn check_value_then(&mut self, field: &'static str, expected: &'static str) -> Result<()> {
        let at = self.offset();
        let mut probe = self.clone();
        probe.skip_value()?;
        Err(DecodeError::WrongType {
            field,
            offset: at,
            expected,
        })
    }

    /// Reads an unsigned integer field that must fit in `max`.
    pub(crate) fn read_uint(
        &mut self,
        field: &'static str,
        ty: &'static str,
        max: u64,
    ) -> Result<u64> {
        let at = self.offset();
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {}
            _ => {
                self.check_value_then(field, "an unsigned integer")?;
            }
        }
        if let Some(n) = self.plain_uint() {
            return match n {
                Some(n) if n <= max => Ok(n),
                _ => Err(DecodeError::OutOfRange {
                    field,
                    offset: at,
                    ty,
                }),
            };
        }
        let text = self.number()?;
        if text.contains(['.', 'e', 'E']) {
            return Err(DecodeError::WrongType {
                field,
                offset: at,
                expected: "an unsigned integer (no fraction or exponent)",
            });
        }
        let out_of_range = DecodeError::OutOfRange {
            field,
            offset: at,
            ty,
        };
        if text.starts_with('-') {
            // "-0" is zero in JSON; any other negative is out of range.
            return if text == "-0" {
                Ok(0)
            } else {
                Err(out_of_range)
            };
        }
        match text.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(out_of_range),
        }
    }

    /// Fast path for the common case, a plain run of digits: the value
    /// (`None` on overflow), consumed. Returns `None` without consuming when
    /// the number has a sign, fraction, exponent or leading zero, which the
    /// general path then classifies.
    #[inline]
    fn plain_uint(&mut self) -> Option<Option<u64>> {
        let b = self.bytes();
        let mut i = self.pos;
        let mut n: Option<u64> = Some(0);
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while let Some(&d) = b.get(i) {
                    if !d.is_ascii_digit() {
                        break;
                    }
                    n = n
                        .and_then(|n| n.checked_mul(10))
                        .and_then(|n| n.checked_add(u64::from(d - b'0')));
                    i += 1;
                }
            }
            _ => return None,
        }
        match b.get(i) {
            Some(b'.' | b'e' | b'E' | b'0'..=b'9') => None,
            _ => {
                self.pos = i;
                Some(n)
            }
        }
    }

    /// Reads a u64 field.
    pub(crate) fn read_u64(&mut self, field: &'static str) -> Result<u64> {
        self.read_uint(field, "u64", u64::MAX)
    }

    /// Reads a u16 field.
    pub(crate) fn read_u16(&mut self, field: &'static str) -> Result<u16> {
        let n = self.read_uint(field, "u16", u64::from(u16::MAX))?;
        Ok(n as u16)
    }

    /// Reads a base64 byte field (canonical, padded, standard alphabet).
    pub(crate) fn read_bytes(&mut self, field: &'static str) -> Result<Bytes> {
        let at = self.offset();
        let text = self.read_str(field)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|_| DecodeError::InvalidBase64 { field, offset: at })
    }

    /// Reads an array of base64 byte values.
    pub(crate) fn read_bytes_list(&mut self, field: &'static str) -> Result<Vec<Bytes>> {
        if self.peek() != Some(b'[') {
            self.check_value_then(field, "an array of base64 strings")?;
        }
        self.pos += 1;
        self.enter()?;
        let mut out = Vec::new();
        let mut first = true;
        while self.next_item(&mut first)? {
            out.push(self.read_bytes(field)?);
        }
        Ok(out)
    }

    /// Skips the value of a `type` key met while reading a message's
    /// fields: the first is the one already dispatched on, a second is a
    /// [`DecodeError::DuplicateField`] at `at` (as for any other field).
    pub(crate) fn skip_type_once(
        &mut self,
        seen: &mut bool,
        field: &'static str,
        at: usize,
    ) -> Result<()> {
        if std::mem::replace(seen, true) {
            return Err(DecodeError::DuplicateField { field, offset: at });
        }
        self.skip_value()
    }

    /// Reads `"type"`'s value without consuming the reader: scans the
    /// top-level object for the `type` key, skipping other values (it is
    /// usually first, so this stops at once).
    pub(crate) fn find_type(&self) -> Result<(Cow<'a, str>, usize)> {
        let mut probe = self.clone();
        let start = probe.offset();
        probe.begin_object()?;
        let mut first = true;
        while let Some((key, _)) = probe.next_key(&mut first)? {
            if key == "type" {
                let at = probe.offset();
                return Ok((probe.read_str("type")?, at));
            }
            probe.skip_value()?;
        }
        Err(DecodeError::MissingField {
            field: "type",
            offset: start,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(text: &str) -> Result<()> {
        let mut r = JsonReader::new(text, 0);
        r.skip_value()?;
        r.end()
    }

    #[test]
    fn accepts_rfc8259_values() {
        for ok in [
            "0",
            "-0",
            "12.5e-3",
            "1E+2",
            "\"a\\u00e9\\ud83d\\ude00\\/\"",
            "[]",
            "[1, [true, false, null], {\"a\": {}}]",
            " { \"k\" : \"v\" } ",
        ] {
            assert_eq!(skip(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\nb\"",
            "tru",
            "[1 2]",
            "{1:2}",
            "\"open",
            "1 2",
        ] {
            let err = skip(bad).expect_err(bad);
            assert!(
                matches!(err, DecodeError::MalformedJson { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep =
            "[".repeat(JSON_MAX_DEPTH as usize + 1) + &"]".repeat(JSON_MAX_DEPTH as usize + 1);
        assert!(matches!(
            skip(&deep),
            Err(DecodeError::MalformedJson { .. })
        ));
        let ok = "[".repeat(JSON_MAX_DEPTH as usize) + &"]".repeat(JSON_MAX_DEPTH as usize);
        assert_eq!(skip(&ok), Ok(()));
    }

    #[test]
    fn integers_check_range_and_form() {
        let read = |t: &str| JsonReader::new(t, 10).read_u16("m.f");
        assert_eq!(read("65535"), Ok(65535));
        assert_eq!(
            read("65536"),
            Err(DecodeError::OutOfRange {
                field: "m.f",
                offset: 10,
                ty: "u16"
            })
        );
        assert!(matches!(read("-1"), Err(DecodeError::OutOfRange { .. })));
        assert!(matches!(read("1.0"), Err(DecodeError::WrongType { .. })));
        assert!(matches!(read("\"1\""), Err(DecodeError::WrongType { .. })));
        let big = JsonReader::new("18446744073709551616", 0).read_u64("m.f");
        assert!(matches!(big, Err(DecodeError::OutOfRange { .. })));
    }

    #[test]
    fn base64_must_be_canonical() {
        let read = |t: &str| JsonReader::new(t, 0).read_bytes("m.f");
        assert_eq!(read("\"aGVsbG8=\"").as_deref(), Ok(&b"hello"[..]));
        for bad in ["\"aGVsbG8\"", "\"QR==\"", "\"-_8=\"", "\"aGVs bG8=\""] {
            assert!(
                matches!(read(bad), Err(DecodeError::InvalidBase64 { .. })),
                "{bad}"
            );
        }
    }
}
