/**
 * Binary payloads: a bounds-checked big-endian reader and a writer.
 *
 * The generated layout modules read fields in wire order through `Reader`
 * (every read names its field; errors carry the frame offset) and write
 * them through `Writer`, which checks each value first so a failed encode
 * never yields bytes. Byte fields are views into the payload: nothing is
 * copied.
 */

import * as utf8 from "./utf8.js";
import { missing } from "./json.js";
import { DecodeError, EncodeError } from "../generated/errors.js";

/** A cursor over one payload; `base` is the payload's frame offset (12). */
export class Reader {
  private pos = 0;
  private readonly view: DataView;

  constructor(
    private readonly data: Uint8Array,
    private readonly base: number,
  ) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  remaining(): number {
    return this.data.length - this.pos;
  }

  private need(n: number, field: string): number {
    if (n > this.remaining()) {
      throw new DecodeError("unexpected_end", field, this.base + this.pos,
        `needs ${n} bytes, only ${this.remaining()} remain in the payload`);
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(field: string): number {
    return this.data[this.need(1, field)];
  }

  u16(field: string): number {
    return this.view.getUint16(this.need(2, field));
  }

  u32(field: string): number {
    return this.view.getUint32(this.need(4, field));
  }

  u64(field: string): bigint {
    return this.view.getBigUint64(this.need(8, field));
  }

  str16(field: string): string {
    const n = this.u16(field);
    const at = this.need(n, field);
    const bad = utf8.firstInvalid(this.data, at, at + n);
    if (bad >= 0) throw new DecodeError("invalid_utf8", field, this.base + bad, "invalid UTF-8");
    return utf8.decode(this.data.subarray(at, at + n));
  }

  bytes32(field: string): Uint8Array {
    const n = this.u32(field);
    const at = this.need(n, field);
    return this.data.subarray(at, at + n);
  }

  /** A count of length-prefixed items, checked before anything is
   * allocated: each item takes at least 4 bytes. */
  count(size: 2 | 4, field: string): number {
    const at = this.base + this.pos;
    const n = size === 2 ? this.u16(field) : this.u32(field);
    if (n > Math.floor(this.remaining() / 4)) {
      throw new DecodeError("count_too_large", field, at,
        `count ${n} exceeds what ${this.remaining()} remaining bytes can hold`);
    }
    return n;
  }

  enumByte<T>(field: string, fromByte: (b: number) => T | undefined): T {
    const at = this.base + this.pos;
    const b = this.u8(field);
    const v = fromByte(b);
    if (v === undefined) throw new DecodeError("invalid_enum_byte", field, at, `${b} is not a defined value`);
    return v;
  }

  finish(layout: string): void {
    if (this.remaining() !== 0) {
      throw new DecodeError("trailing_bytes", layout, this.base + this.pos,
        `${this.remaining()} trailing bytes after the last field`);
    }
  }
}

/** The longest prefix of UTF-8 `b` of at most `limit` bytes ending on a character boundary. */
export function cutUtf8(b: Uint8Array, limit: number): Uint8Array {
  if (b.length <= limit) return b;
  let end = limit;
  while (end > 0 && (b[end] & 0xc0) === 0x80) end--; // b[end] continues a character
  return b.subarray(0, end);
}

/** Collects a payload; every write checks its value first. */
export class Writer {
  private parts: Uint8Array[] = [];
  private length = 0;

  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.length;
  }

  uint(v: unknown, size: 1 | 2 | 4 | 8, field: string): void {
    missing(v, field);
    let n: bigint;
    if (typeof v === "bigint") n = v;
    else if (typeof v === "number" && Number.isInteger(v)) n = BigInt(v);
    else throw new EncodeError("wrong_type", field, "expected an integer");
    if (n < 0n || n >> BigInt(8 * size) !== 0n) {
      throw new EncodeError("out_of_range", field, `${n} does not fit u${8 * size}`);
    }
    const b = new Uint8Array(size);
    for (let k = size - 1; k >= 0; k--) {
      b[k] = Number(n & 0xffn);
      n >>= 8n;
    }
    this.push(b);
  }

  /** A str16; with `maxBytes` the text is cut to that many bytes on a
   * character boundary, as writers of that field must. */
  str16(v: unknown, field: string, maxBytes?: number): void {
    missing(v, field);
    if (typeof v !== "string") throw new EncodeError("wrong_type", field, "expected a string");
    if (!utf8.isWellFormed(v)) throw new EncodeError("invalid_utf8", field, "a lone surrogate");
    let b = utf8.encode(v);
    if (maxBytes !== undefined) b = cutUtf8(b, maxBytes);
    if (b.length > 0xffff) throw new EncodeError("out_of_range", field, `${b.length} bytes do not fit a str16`);
    this.uint(b.length, 2, field);
    this.push(b);
  }

  bytes32(v: unknown, field: string): void {
    missing(v, field);
    if (!(v instanceof Uint8Array)) throw new EncodeError("wrong_type", field, "expected a Uint8Array");
    this.uint(v.length, 4, field);
    this.push(v);
  }

  /** Writes the count of `items` (an array) and returns it. */
  count<T>(items: T[] | undefined, size: 2 | 4, field: string): T[] {
    missing(items, field);
    if (!Array.isArray(items)) throw new EncodeError("wrong_type", field, "expected an array");
    this.uint(items.length, size, field);
    return items;
  }

  /** One byte, already checked. */
  byte(b: number): void {
    this.push(Uint8Array.of(b));
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const p of this.parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}
