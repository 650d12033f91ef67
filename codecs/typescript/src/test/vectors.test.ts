// Every test vector through the generated package: one-shot decoding,
// streaming (one byte at a time, and every frame back to back), and the
// re-encoding of every canonical case. Run by `npm test` (node --test).

import { strict as assert } from "node:assert";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { DEFAULT_MAX_FRAME_BYTES, DecodeError, FrameDecoder, decodeFrame, encodeFrame, fromNeutral, toNeutral } from "../index.js";
import * as json from "../runtime/json.js";
import * as neutral from "../runtime/neutral.js";

// dist/test/ -> the repository's vectors/
const VECTORS = fileURLToPath(new URL("../../../../vectors/", import.meta.url));

interface Case {
  id: string;
  bytes: Uint8Array;
  cap: number;
  result: string;
  canonical: boolean;
  /** What encoding `decoded` must give when a writer's rule changes the frame. */
  encoded: Uint8Array | null;
  decoded: neutral.Value;
  errorClass: string;
}

function files(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === "schema" ? [] : files(p);
    return name.endsWith(".json") ? [p] : [];
  });
}

function loadCases(): Case[] {
  const cases: Case[] = [];
  for (const path of files(VECTORS)) {
    // Parsed with the codec's own parser: JSON.parse would round u64 values.
    const doc = neutral.fromNode(json.parseValue(readFileSync(path), 0, 256)) as neutral.Fields;
    for (const group of doc["testGroups"] as neutral.Fields[]) {
      for (const t of group["tests"] as neutral.Fields[]) {
        cases.push({
          id: t["id"] as string,
          bytes: neutral.fromHex((t["frame"] as string).replace(/\s+/g, ""), "frame"),
          cap: t["maxFrameBytes"] == null ? DEFAULT_MAX_FRAME_BYTES : Number(t["maxFrameBytes"]),
          result: t["result"] as string,
          canonical: t["canonical"] === true,
          encoded: t["encoded"] == null ? null : neutral.fromHex((t["encoded"] as string).replace(/\s+/g, ""), "encoded"),
          decoded: t["decoded"] ?? null,
          errorClass: (t["errorClass"] as string) ?? "",
        });
      }
    }
  }
  return cases;
}

const CASES = loadCases();

function errorClassOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof DecodeError) return e.errorClass;
    throw e;
  }
  return "no error";
}

function assertNeutral(actual: neutral.Value, expected: neutral.Value, id: string): void {
  assert.ok(neutral.equal(actual, expected), `${id}: ${neutral.stringify(actual)} != ${neutral.stringify(expected)}`);
}

test("there are vectors", () => {
  assert.ok(CASES.length > 150, `${CASES.length} cases`);
});

test("every vector decodes as it says", () => {
  for (const t of CASES) {
    if (t.result === "valid") {
      const { frame, size } = decodeFrame(t.bytes, t.cap);
      assert.equal(size, t.bytes.length, t.id);
      assertNeutral(toNeutral(frame), t.decoded, t.id);
    } else {
      assert.equal(errorClassOf(() => decodeFrame(t.bytes, t.cap)), t.errorClass, t.id);
    }
  }
});

test("the streaming decoder agrees, one byte at a time", () => {
  for (const t of CASES) {
    const dec = new FrameDecoder(t.cap);
    const frames = [];
    let error = "no error";
    try {
      for (let i = 0; i < t.bytes.length; i++) frames.push(...dec.feed(t.bytes.subarray(i, i + 1)));
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      error = e.errorClass;
    }
    if (t.result === "valid") {
      assert.equal(frames.length, 1, t.id);
      assertNeutral(toNeutral(frames[0]), t.decoded, t.id);
    } else if (t.errorClass === "incomplete") {
      assert.equal(error, "no error", t.id); // it simply waits
      assert.equal(frames.length, 0, t.id);
    } else {
      assert.equal(error, t.errorClass, t.id);
    }
  }
});

test("every canonical vector encodes back to its bytes", () => {
  let n = 0;
  for (const t of CASES) {
    if (t.result !== "valid" || !t.canonical) continue;
    assert.equal(neutral.toHex(encodeFrame(fromNeutral(t.decoded))), neutral.toHex(t.bytes), t.id);
    n++;
  }
  assert.ok(n > 50, `${n} canonical cases`);
});

test("every case that names its encoded bytes encodes to them (the writer's cut of ack text)", () => {
  const cases = CASES.filter((t) => t.encoded !== null);
  assert.ok(cases.length > 0, "no vector names its encoded bytes");
  for (const t of cases) {
    assert.equal(neutral.toHex(encodeFrame(fromNeutral(t.decoded))), neutral.toHex(t.encoded as Uint8Array), t.id);
  }
});

test("every valid frame back to back, in pieces that straddle frames", () => {
  const valid = CASES.filter((t) => t.result === "valid" && t.cap === DEFAULT_MAX_FRAME_BYTES);
  const stream = new Uint8Array(valid.reduce((n, t) => n + t.bytes.length, 0));
  let o = 0;
  for (const t of valid) {
    stream.set(t.bytes, o);
    o += t.bytes.length;
  }
  const dec = new FrameDecoder();
  const frames = [];
  for (let i = 0; i < stream.length; i += 7) frames.push(...dec.feed(stream.subarray(i, i + 7)));
  assert.equal(frames.length, valid.length);
  frames.forEach((f, i) => assertNeutral(toNeutral(f), valid[i].decoded, valid[i].id));
  assert.equal(dec.streamOffset, stream.length);
});
