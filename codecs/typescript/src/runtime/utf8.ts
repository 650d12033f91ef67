/**
 * UTF-8: a validator that says where the first bad byte is (TextDecoder
 * only says that there is one), and strict encoding and decoding.
 */

const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

/**
 * Offset of the first byte that does not start a valid UTF-8 sequence
 * (overlong forms, surrogates and values above U+10FFFF included), or -1.
 */
export function firstInvalid(b: Uint8Array, start = 0, end = b.length): number {
  let i = start;
  while (i < end) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else {
      return i;
    }
    if (i + need >= end) return i; // the sequence runs past the end
    if (b[i + 1] < lo || b[i + 1] > hi) return i;
    for (let k = 2; k <= need; k++) {
      if ((b[i + k] & 0xc0) !== 0x80) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** Decodes bytes already known to be valid UTF-8 (a BOM is kept). */
export function decode(b: Uint8Array): string {
  return decoder.decode(b);
}

/** True when the string has no lone surrogate (so it has a UTF-8 form). */
export function isWellFormed(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

/** The UTF-8 bytes of a well-formed string. */
export function encode(s: string): Uint8Array {
  return encoder.encode(s);
}
