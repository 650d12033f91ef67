/**
 * JSON payloads: a strict RFC 8259 parser over bytes and byte-exact writers.
 *
 * `JSON.parse` is no use for a wire codec: it rounds integers above 2^53,
 * keeps only the last of duplicate keys and has no depth bound. This parser
 * keeps every pair of an object (so the generated code can judge
 * duplicates), keeps numbers as text (so `1.0` and `1e3` are not integers
 * and u64 values stay exact as `bigint`), and works on the payload's bytes,
 * so every error names a byte offset in the frame.
 *
 * The generated message modules call the readers (`required`, `optional`,
 * `present`, `read*`) and writers (`write*`) below; nothing here knows any
 * message.
 */

import * as base64 from "./base64.js";
import * as utf8 from "./utf8.js";
import { DecodeError, EncodeError } from "../generated/errors.js";

/** A JSON number as its text; `isInt` when it has no fraction or exponent. */
export class Num {
  constructor(
    readonly text: string,
    readonly isInt: boolean,
  ) {}
}

/** A JSON object: every pair in input order, with the key's offset. */
export class Obj {
  constructor(
    readonly pairs: ReadonlyArray<readonly [key: string, node: Node, keyAt: number]>,
    readonly at: number,
  ) {}
}

/** A parsed value. */
export type Value = null | boolean | string | Num | Node[] | Obj;

/** A parsed value and the frame offset of its first byte. */
export interface Node {
  readonly value: Value;
  readonly at: number;
}

const Q = 0x22; // "
const BS = 0x5c; // \
const ESCAPES: Record<number, string> = {
  0x22: '"', 0x5c: "\\", 0x2f: "/", 0x62: "\b", 0x66: "\f", 0x6e: "\n", 0x72: "\r", 0x74: "\t",
};
const WORDS: ReadonlyArray<readonly [string, Value]> = [["true", true], ["false", false], ["null", null]];

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

class Parser {
  i = 0;
  constructor(
    readonly s: Uint8Array,
    readonly base: number,
    readonly maxDepth: number,
  ) {}

  fail(why: string): never {
    throw new DecodeError("malformed_json", "json", this.base + this.i, why);
  }

  peek(): number {
    return this.i < this.s.length ? this.s[this.i] : -1;
  }

  ws(): void {
    for (;;) {
      const c = this.peek();
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return;
      this.i++;
    }
  }

  value(depth: number): Node {
    this.ws();
    const at = this.base + this.i;
    const c = this.peek();
    if (c === 0x7b || c === 0x5b) {
      if (depth + 1 > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
      return { value: c === 0x7b ? this.obj(depth + 1, at) : this.arr(depth + 1), at };
    }
    if (c === Q) return { value: this.string(), at };
    for (const [word, v] of WORDS) {
      if (this.startsWith(word)) {
        this.i += word.length;
        return { value: v, at };
      }
    }
    if (c === 0x2d || isDigit(c)) return { value: this.number(), at };
    return this.fail(c < 0 ? "unexpected end" : "expected a value");
  }

  startsWith(word: string): boolean {
    for (let k = 0; k < word.length; k++) {
      if (this.s[this.i + k] !== word.charCodeAt(k)) return false;
    }
    return true;
  }

  digits(): number {
    const start = this.i;
    while (isDigit(this.peek())) this.i++;
    return this.i - start;
  }

  number(): Num {
    const start = this.i;
    if (this.peek() === 0x2d) this.i++;
    if (this.peek() === 0x30) {
      this.i++;
    } else if (this.digits() === 0) {
      this.fail("expected a digit");
    }
    let isInt = true;
    if (this.peek() === 0x2e) {
      this.i++;
      if (this.digits() === 0) this.fail("expected a digit after '.'");
      isInt = false;
    }
    if (this.peek() === 0x65 || this.peek() === 0x45) {
      this.i++;
      if (this.peek() === 0x2b || this.peek() === 0x2d) this.i++;
      if (this.digits() === 0) this.fail("expected a digit in the exponent");
      isInt = false;
    }
    let text = "";
    for (let k = start; k < this.i; k++) text += String.fromCharCode(this.s[k]);
    return new Num(text, isInt);
  }

  obj(depth: number, at: number): Obj {
    this.i++; // {
    const pairs: Array<readonly [string, Node, number]> = [];
    this.ws();
    if (this.peek() === 0x7d) {
      this.i++;
      return new Obj(pairs, at);
    }
    for (;;) {
      this.ws();
      if (this.peek() !== Q) this.fail("expected a key");
      const keyAt = this.base + this.i;
      const key = this.string();
      this.ws();
      if (this.peek() !== 0x3a) this.fail("expected ':'");
      this.i++;
      pairs.push([key, this.value(depth), keyAt]);
      this.ws();
      const c = this.peek();
      if (c === 0x7d) {
        this.i++;
        return new Obj(pairs, at);
      }
      if (c !== 0x2c) this.fail("expected ',' or '}'");
      this.i++;
    }
  }

  arr(depth: number): Node[] {
    this.i++; // [
    const items: Node[] = [];
    this.ws();
    if (this.peek() === 0x5d) {
      this.i++;
      return items;
    }
    for (;;) {
      items.push(this.value(depth));
      this.ws();
      const c = this.peek();
      if (c === 0x5d) {
        this.i++;
        return items;
      }
      if (c !== 0x2c) this.fail("expected ',' or ']'");
      this.i++;
    }
  }

  hex4(): number {
    let n = 0;
    for (let k = 0; k < 4; k++) {
      const v = hexValue(this.peek());
      if (v < 0) this.fail("\\u needs four hex digits");
      n = n * 16 + v;
      this.i++;
    }
    return n;
  }

  string(): string {
    const s = this.s;
    this.i++; // opening quote
    let out = "";
    for (;;) {
      const start = this.i;
      // A run of bytes that need no care; the payload is valid UTF-8 and the
      // run stops only at ASCII bytes, so it never splits a character.
      while (this.i < s.length && s[this.i] !== Q && s[this.i] !== BS && s[this.i] >= 0x20) this.i++;
      if (this.i > start) out += utf8.decode(s.subarray(start, this.i));
      const c = this.peek();
      if (c === Q) {
        this.i++;
        return out;
      }
      if (c < 0) this.fail("unterminated string");
      if (c !== BS) this.fail(`raw control character U+${c.toString(16).padStart(4, "0")} in a string`);
      const e = this.i + 1 < s.length ? s[this.i + 1] : -1;
      this.i += 2;
      if (ESCAPES[e] !== undefined) {
        out += ESCAPES[e];
      } else if (e === 0x75) {
        let cp = this.hex4();
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (s[this.i] !== BS || s[this.i + 1] !== 0x75) this.fail("lone high surrogate");
          this.i += 2;
          const lo = this.hex4();
          if (lo < 0xdc00 || lo > 0xdfff) this.fail("lone high surrogate");
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
          this.fail("lone low surrogate");
        }
        out += String.fromCodePoint(cp);
      } else {
        this.i -= 2;
        this.fail("invalid escape");
      }
    }
  }
}

/**
 * Parses bytes that must be one JSON value (any value: the driver reads its
 * requests with it too). `base` is the offset of `bytes` in the frame;
 * `maxDepth` bounds container nesting.
 */
export function parseValue(bytes: Uint8Array, base: number, maxDepth: number): Node {
  const bad = utf8.firstInvalid(bytes);
  if (bad >= 0) throw new DecodeError("invalid_utf8", "json", base + bad, "the payload is not UTF-8");
  const p = new Parser(bytes, base, maxDepth);
  const node = p.value(0);
  p.ws();
  if (p.i !== bytes.length) p.fail("data after the JSON value");
  return node;
}

/**
 * Parses a payload that must be one UTF-8 JSON object; `base` is its offset
 * in the frame (12), `maxDepth` the deepest nesting (the object is 1).
 */
export function parse(payload: Uint8Array, base: number, maxDepth: number): Obj {
  const bad = utf8.firstInvalid(payload);
  if (bad >= 0) throw new DecodeError("invalid_utf8", "json", base + bad, "the payload is not UTF-8");
  const p = new Parser(payload, base, maxDepth);
  p.ws();
  if (p.peek() !== 0x7b) p.fail("the payload is not a JSON object");
  const node = p.value(0);
  p.ws();
  if (p.i !== payload.length) p.fail("data after the JSON object");
  return node.value as Obj;
}

/** The object's `type` and its offset (missing, twice or not a string: an error). */
export function messageType(obj: Obj): [string, number] {
  const found = obj.pairs.filter(([key]) => key === "type");
  if (found.length === 0) throw new DecodeError("missing_field", "type", obj.at, "the object has no type");
  if (found.length > 1) throw new DecodeError("duplicate_field", "type", found[1][2], "type given twice");
  const node = found[0][1];
  if (typeof node.value !== "string") {
    throw new DecodeError("wrong_type", "type", node.at, `expected a string, got ${typeName(node.value)}`);
  }
  return [node.value, node.at];
}

/** The known fields of a message object; a known key given twice is an error. */
export function fields(obj: Obj, names: ReadonlySet<string>, message: string): Map<string, Node> {
  const found = new Map<string, Node>();
  for (const [key, node, keyAt] of obj.pairs) {
    if (names.has(key)) {
      if (found.has(key)) throw new DecodeError("duplicate_field", `${message}.${key}`, keyAt, "given twice");
      found.set(key, node);
    }
  }
  return found;
}

/** A `required` field: present and not null. */
export function required(found: Map<string, Node>, name: string, field: string, obj: Obj): Node {
  const node = found.get(name);
  if (node === undefined) throw new DecodeError("missing_field", field, obj.at, "required");
  if (node.value === null) throw new DecodeError("wrong_type", field, node.at, "null for a required field");
  return node;
}

/** An `omit` or `null` field: missing and null both mean absent. */
export function optional(found: Map<string, Node>, name: string): Node | undefined {
  const node = found.get(name);
  return node === undefined || node.value === null ? undefined : node;
}

/** A `nullable` field: the key must be there; null means absent. */
export function present(found: Map<string, Node>, name: string, field: string, obj: Obj): Node | undefined {
  const node = found.get(name);
  if (node === undefined) throw new DecodeError("missing_field", field, obj.at, "required (it may be null)");
  return node.value === null ? undefined : node;
}

/** How an error message names the JSON type of a value. */
export function typeName(v: Value): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return "a boolean";
  if (typeof v === "string") return "a string";
  if (v instanceof Num) return "a number";
  if (Array.isArray(v)) return "an array";
  return "an object";
}

export function readString(node: Node, field: string): string {
  if (typeof node.value !== "string") {
    throw new DecodeError("wrong_type", field, node.at, `expected a string, got ${typeName(node.value)}`);
  }
  return node.value;
}

/** An unsigned integer of `bits` bits, exactly. */
export function readUint(node: Node, field: string, bits: number): bigint {
  const v = node.value;
  if (!(v instanceof Num)) {
    throw new DecodeError("wrong_type", field, node.at, `expected an integer, got ${typeName(v)}`);
  }
  if (!v.isInt) throw new DecodeError("wrong_type", field, node.at, `${v.text} has a fraction or exponent`);
  if (v.text.startsWith("-")) {
    if (v.text === "-0") return 0n; // the integer zero in JSON
    throw new DecodeError("out_of_range", field, node.at, `${v.text} is negative`);
  }
  // No leading zeros in JSON: more than 20 digits is above 2^64-1.
  if (v.text.length > 20 || BigInt(v.text) >> BigInt(bits) !== 0n) {
    throw new DecodeError("out_of_range", field, node.at, `${v.text.slice(0, 40)} does not fit u${bits}`);
  }
  return BigInt(v.text);
}

export function readU16(node: Node, field: string): number {
  return Number(readUint(node, field, 16));
}

export function readU64(node: Node, field: string): bigint {
  return readUint(node, field, 64);
}

export function readBytes(node: Node, field: string): Uint8Array {
  const v = node.value;
  if (typeof v !== "string") {
    throw new DecodeError("wrong_type", field, node.at, `expected a base64 string, got ${typeName(v)}`);
  }
  const out = base64.decode(v);
  if (out === null) throw new DecodeError("invalid_base64", field, node.at, "not canonical standard base64");
  return out;
}

export function readBytesList(node: Node, field: string): Uint8Array[] {
  const v = node.value;
  if (!Array.isArray(v)) {
    throw new DecodeError("wrong_type", field, node.at, `expected an array, got ${typeName(v)}`);
  }
  return v.map((item) => readBytes(item, field));
}

/** A unit enum value written as a JSON string; `words` maps JSON text to the value. */
export function readEnumWord<T>(node: Node, field: string, enumName: string, words: ReadonlyMap<string, T>): T {
  const v = node.value;
  if (typeof v !== "string") {
    throw new DecodeError("wrong_type", field, node.at, `expected a string, got ${typeName(v)}`);
  }
  const found = words.get(v);
  if (found === undefined) {
    throw new DecodeError("invalid_enum_value", field, node.at, `${JSON.stringify(v.slice(0, 64))} is not a ${enumName}`);
  }
  return found;
}

// ------------------------------------------------------------------ writers
// Each writer checks its value first and throws EncodeError: undefined or
// null for a field that must be written is missing_field, a value of the
// wrong JavaScript type wrong_type, an integer that does not fit out_of_range.

export function missing(v: unknown, field: string): void {
  if (v === undefined || v === null) throw new EncodeError("missing_field", field, "required");
}

/**
 * A JSON string exactly as felix-wire writers write it: only `"`, `\` and
 * control characters escaped (`\b \f \n \r \t`, else lowercase `\u00xx`);
 * `/`, DEL and non-ASCII raw.
 */
export function writeString(v: unknown, field: string): string {
  missing(v, field);
  if (typeof v !== "string") throw new EncodeError("wrong_type", field, "expected a string");
  if (!utf8.isWellFormed(v)) throw new EncodeError("invalid_utf8", field, "a lone surrogate");
  let out = '"';
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c >= 0x20) out += v[i];
    else if (c === 0x08) out += "\\b";
    else if (c === 0x0c) out += "\\f";
    else if (c === 0x0a) out += "\\n";
    else if (c === 0x0d) out += "\\r";
    else if (c === 0x09) out += "\\t";
    else out += "\\u" + c.toString(16).padStart(4, "0");
  }
  return out + '"';
}

/** Checks an integer field: a `number` (an integer) or a `bigint` of `bits` bits. */
export function checkUint(v: unknown, field: string, bits: number): bigint {
  missing(v, field);
  let n: bigint;
  if (typeof v === "bigint") n = v;
  else if (typeof v === "number" && Number.isInteger(v)) n = BigInt(v);
  else throw new EncodeError("wrong_type", field, "expected an integer");
  if (n < 0n || n >> BigInt(bits) !== 0n) throw new EncodeError("out_of_range", field, `${n} does not fit u${bits}`);
  return n;
}

export function writeUint(v: unknown, field: string, bits: number): string {
  return checkUint(v, field, bits).toString();
}

export function checkBytes(v: unknown, field: string): Uint8Array {
  missing(v, field);
  if (!(v instanceof Uint8Array)) throw new EncodeError("wrong_type", field, "expected a Uint8Array");
  return v;
}

export function writeBytes(v: unknown, field: string): string {
  return '"' + base64.encode(checkBytes(v, field)) + '"';
}

export function writeBytesList(v: unknown, field: string): string {
  missing(v, field);
  if (!Array.isArray(v)) throw new EncodeError("wrong_type", field, "expected an array of Uint8Array");
  return "[" + v.map((item) => writeBytes(item, field)).join(",") + "]";
}
