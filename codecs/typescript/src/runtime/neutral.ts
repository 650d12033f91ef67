/**
 * The neutral form the test vectors and the conformance driver use:
 * `{"flags", "kind", "fields"}`, bytes as lowercase hex, absent as null.
 * Integers are `bigint` (u64 values pass 2^53) or `number`.
 *
 * The generated `fromNeutral` functions call the readers here; a value that
 * does not fit throws `EncodeError` with the nearest spec error class.
 */

import { EncodeError } from "../generated/errors.js";
import { Num, Obj, type Node } from "./json.js";

/** A neutral JSON value. */
export type Value = null | boolean | number | bigint | string | Value[] | { [key: string]: Value };

/** The `fields` of a frame. */
export type Fields = { [key: string]: Value };

export function isObject(v: unknown): v is Fields {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A field that is present and not null, else undefined. */
export function get(fields: Fields, name: string): Value | undefined {
  const v = fields[name];
  return v === null ? undefined : v;
}

export function required(fields: Fields, name: string, field: string): Value {
  const v = get(fields, name);
  if (v === undefined) throw new EncodeError("missing_field", field, "required");
  return v;
}

export function string(v: Value, field: string): string {
  if (typeof v !== "string") throw new EncodeError("wrong_type", field, "expected a string");
  return v;
}

export function uint(v: Value, field: string, bits: number): bigint {
  let n: bigint;
  if (typeof v === "bigint") n = v;
  else if (typeof v === "number" && Number.isInteger(v)) n = BigInt(v);
  else throw new EncodeError("wrong_type", field, "expected an integer");
  if (n < 0n || n >> BigInt(bits) !== 0n) throw new EncodeError("out_of_range", field, `${n} does not fit u${bits}`);
  return n;
}

/** An integer of at most 32 bits, as a `number`. */
export function small(v: Value, field: string, bits: number): number {
  return Number(uint(v, field, bits));
}

export function toHex(b: Uint8Array): string {
  let out = "";
  for (const x of b) out += x.toString(16).padStart(2, "0");
  return out;
}

export function fromHex(v: Value, field: string): Uint8Array {
  if (typeof v !== "string" || v.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(v)) {
    throw new EncodeError("wrong_type", field, "expected bytes as hex");
  }
  const out = new Uint8Array(v.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(v.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function list(v: Value, field: string): Value[] {
  if (!Array.isArray(v)) throw new EncodeError("wrong_type", field, "expected an array");
  return v;
}

export function fromHexList(v: Value, field: string): Uint8Array[] {
  return list(v, field).map((x) => fromHex(x, field));
}

/** A unit enum value by its name. */
export function word<T extends string>(v: Value, field: string, enumName: string, names: readonly T[]): T {
  if (typeof v !== "string") throw new EncodeError("wrong_type", field, "expected a string");
  if (!(names as readonly string[]).includes(v)) {
    throw new EncodeError("invalid_enum_value", field, `${JSON.stringify(v)} is not a ${enumName}`);
  }
  return v as T;
}

/** A parsed JSON node as a neutral value: integers become `bigint`,
 * other numbers `number`; of duplicate keys the last wins. */
export function fromNode(node: Node): Value {
  const v = node.value;
  if (v instanceof Num) return v.isInt ? BigInt(v.text) : Number(v.text);
  if (v instanceof Obj) {
    const out: Fields = {};
    for (const [key, child] of v.pairs) out[key] = fromNode(child);
    return out;
  }
  if (Array.isArray(v)) return v.map(fromNode);
  return v;
}

/** Compact JSON text of a neutral value, integers exact. */
export function stringify(v: Value): string {
  if (v === null) return "null";
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return "[" + v.map(stringify).join(",") + "]";
  return "{" + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ":" + stringify(x)).join(",") + "}";
}

/** Deep equality that takes `1n` and `1` as equal (and key order as irrelevant). */
export function equal(a: Value, b: Value): boolean {
  if ((typeof a === "bigint" || typeof a === "number") && (typeof b === "bigint" || typeof b === "number")) {
    return BigInt(a) === BigInt(b);
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && equal(a[k], b[k]));
  }
  return a === b;
}
