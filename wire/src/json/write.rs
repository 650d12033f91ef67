//! JSON writing helpers used by the generated encoders.
//!
//! Output is byte-exact with what Felix peers write (serde_json's compact
//! form): strings escape only `"`, `\` and control characters, using the
//! short escapes `\b \f \n \r \t` where they exist and lowercase `\u00xx`
//! otherwise; `/`, DEL and non-ASCII are written raw. Every writer has a
//! `*_len` twin so a frame's length is known before its first byte is
//! written, which lets encoders put the header first without a scratch
//! buffer.

use base64::Engine as _;
use bytes::BufMut;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The escape for `b`, or `None` when `b` is written raw.
#[inline]
fn escape(b: u8) -> Option<&'static [u8]> {
    Some(match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x00..=0x1f => b"\\u00",
        _ => return None,
    })
}

/// Length of `s` as a quoted JSON string.
#[inline]
pub(crate) fn str_len(s: &str) -> usize {
    let extra: usize = s
        .bytes()
        .map(|b| match escape(b) {
            None => 0,
            Some(e) if e.len() == 4 => 5, // \u00xx replaces 1 byte with 6
            Some(_) => 1,
        })
        .sum();
    s.len() + 2 + extra
}

/// Writes `s` as a quoted JSON string.
#[inline]
pub(crate) fn put_str<B: BufMut>(dst: &mut B, s: &str) {
    dst.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(e) = escape(b) {
            dst.put_slice(&bytes[run..i]);
            dst.put_slice(e);
            if e.len() == 4 {
                dst.put_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            }
            run = i + 1;
        }
    }
    dst.put_slice(&bytes[run..]);
    dst.put_u8(b'"');
}

/// Decimal length of `n`.
#[inline]
pub(crate) fn u64_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Writes `n` in decimal.
#[inline]
pub(crate) fn put_u64<B: BufMut>(dst: &mut B, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&buf[i..]);
}

/// Decimal length of an unsigned integer field (by reference, as the
/// generated code holds it).
#[inline]
pub(crate) fn uint_len<T: Copy + Into<u64>>(n: &T) -> usize {
    u64_len((*n).into())
}

/// Writes an unsigned integer field in decimal.
#[inline]
pub(crate) fn put_uint<B: BufMut, T: Copy + Into<u64>>(dst: &mut B, n: &T) {
    put_u64(dst, (*n).into())
}

/// Length of `len` bytes as a quoted padded base64 string.
#[inline]
pub(crate) fn bytes_len(len: usize) -> usize {
    len.div_ceil(3) * 4 + 2
}

/// Writes `data` as a quoted padded standard base64 string.
#[inline]
pub(crate) fn put_bytes<B: BufMut>(dst: &mut B, data: &[u8]) {
    // Encode through a stack buffer: 768 input bytes -> 1024 output bytes,
    // whole 3-byte groups so only the last chunk carries padding.
    const CHUNK: usize = 768;
    let mut out = [0u8; CHUNK / 3 * 4];
    dst.put_u8(b'"');
    for chunk in data.chunks(CHUNK) {
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(chunk, &mut out)
            .unwrap_or(0); // cannot fail: `out` fits a full chunk
        dst.put_slice(&out[..n]);
    }
    dst.put_u8(b'"');
}

/// Length of a JSON array of base64 strings.
#[inline]
pub(crate) fn bytes_list_len<T: AsRef<[u8]>>(items: &[T]) -> usize {
    2 + items.len().saturating_sub(1)
        + items
            .iter()
            .map(|i| bytes_len(i.as_ref().len()))
            .sum::<usize>()
}

/// Writes a JSON array of base64 strings.
#[inline]
pub(crate) fn put_bytes_list<B: BufMut, T: AsRef<[u8]>>(dst: &mut B, items: &[T]) {
    dst.put_u8(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            dst.put_u8(b',');
        }
        put_bytes(dst, item.as_ref());
    }
    dst.put_u8(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).expect("utf8")
    }

    #[test]
    fn strings_escape_like_felix() {
        let s = "q\"b\\/\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}é😀";
        let out = text(|v| put_str(v, s));
        assert_eq!(out, "\"q\\\"b\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}é😀\"");
        assert_eq!(str_len(s), out.len());
        assert_eq!(out, serde_json::to_string(s).expect("serde_json"));
    }

    #[test]
    fn numbers_and_lengths_agree() {
        for n in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            let out = text(|v| put_u64(v, n));
            assert_eq!(out, n.to_string());
            assert_eq!(u64_len(n), out.len());
        }
    }

    #[test]
    fn base64_is_padded_and_chunked_correctly() {
        for len in [0, 1, 2, 3, 767, 768, 769, 2000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let out = text(|v| put_bytes(v, &data));
            let want = format!(
                "\"{}\"",
                base64::engine::general_purpose::STANDARD.encode(&data)
            );
            assert_eq!(out, want, "len {len}");
            assert_eq!(bytes_len(len), out.len());
        }
        let items = [&b"a"[..], b"", b"bc"];
        let out = text(|v| put_bytes_list(v, &items));
        assert_eq!(out, "[\"YQ==\",\"\",\"YmM=\"]");
        assert_eq!(bytes_list_len(&items), out.len());
    }
}
