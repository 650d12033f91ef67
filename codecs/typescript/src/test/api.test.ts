// The package's API beyond the vectors: typed values, error details, the
// streaming decoder's cap, and encode-side checks.

import { strict as assert } from "node:assert";
import { test } from "node:test";

import {
  DecodeError,
  EncodeError,
  type Frame,
  FrameDecoder,
  decodeFrame,
  encodeFrame,
  fromNeutral,
} from "../index.js";

const te = new TextEncoder();

function header(flags: number, length: number): Uint8Array {
  const h = new Uint8Array(12);
  const v = new DataView(h.buffer);
  h.set(te.encode("FLX1"));
  v.setUint16(4, 1);
  v.setUint16(6, flags);
  v.setUint32(8, length);
  return h;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function decodeError(f: () => unknown): DecodeError {
  try {
    f();
  } catch (e) {
    if (e instanceof DecodeError) return e;
    throw e;
  }
  throw new Error("no error");
}

test("typed values round-trip", () => {
  const frames: Frame[] = [
    { kind: "subscribe", tenantId: "t1", namespace: "default", stream: "s", start: { offset: 5n } },
    { kind: "subscribe", tenantId: "t1", namespace: "default", stream: "s", start: "earliest" },
    { kind: "cache_put", tenantId: "t", namespace: "n", cache: "c", key: "k", value: Uint8Array.of(0, 255), ttlMs: 2n ** 64n - 1n },
    { kind: "cache_value", tenantId: "t", namespace: "n", cache: "c", key: "k" },
    { kind: "ok" },
    { kind: "binary_acked_publish_batch", requestId: 7n, ackMode: "per_batch", tenantId: "t", namespace: "n", stream: "s", payloads: [te.encode("a"), new Uint8Array(0)] },
    { kind: "binary_shared_event_batch", payloads: [te.encode("x")], baseOffset: 2n ** 53n + 1n },
    { kind: "binary_publish_ack", status: "error", requestId: 1n, message: "no" },
  ];
  for (const frame of frames) {
    const bytes = encodeFrame(frame);
    const { frame: back, size } = decodeFrame(concat(bytes, te.encode("next")));
    assert.equal(size, bytes.length);
    assert.deepEqual(back, frame);
  }
});

test("null rules on the wire", () => {
  const td = new TextDecoder();
  const put = encodeFrame({ kind: "cache_put", tenantId: "t", namespace: "n", cache: "c", key: "k", value: new Uint8Array(0) });
  assert.ok(td.decode(put).endsWith('"value":"","ttl_ms":null}'));
  const miss = encodeFrame({ kind: "cache_value", tenantId: "t", namespace: "n", cache: "c", key: "k" });
  assert.ok(td.decode(miss).endsWith('"key":"k","value":null}'));
  assert.equal(td.decode(encodeFrame({ kind: "ok" }).subarray(12)), '{"type":"ok"}');
});

test("errors name the field and the byte offset", () => {
  let e = decodeError(() => decodeFrame(concat(header(0, 27), te.encode('{"type":"auth_ok","x":true}'))));
  assert.deepEqual([e.errorClass, e.field, e.offset], ["missing_field", "auth_ok.server_flags", 12]);
  e = decodeError(() => decodeFrame(concat(header(0, 36), te.encode('{"type":"auth_ok","server_flags":-1}'))));
  assert.deepEqual([e.errorClass, e.field, e.offset], ["out_of_range", "auth_ok.server_flags", 45]);
  e = decodeError(() => decodeFrame(concat(header(0x10, 11), Uint8Array.of(5), new Uint8Array(10))));
  assert.deepEqual([e.errorClass, e.field, e.offset], ["invalid_enum_byte", "binary_publish_ack.status", 12]);
});

test("incomplete is distinct from invalid", () => {
  const bytes = encodeFrame({ kind: "error", message: "boom" });
  const e = decodeError(() => decodeFrame(bytes.subarray(0, bytes.length - 1)));
  assert.ok(e.isIncomplete);
  assert.ok(!decodeError(() => decodeFrame(te.encode("FLX2xxxxxxxx"))).isIncomplete);
});

test("the cap is checked before the payload is buffered, and errors are final", () => {
  const dec = new FrameDecoder(16);
  assert.equal(decodeError(() => dec.feed(concat(header(1, 17), new Uint8Array(5)))).errorClass, "frame_too_large");
  assert.equal(dec.buffered, 12); // the header only, never the payload
  assert.equal(decodeError(() => dec.feed(new Uint8Array(0))).errorClass, "frame_too_large");
});

test("a frame of exactly the cap is accepted; the cap can change between frames", () => {
  const bytes = encodeFrame({ kind: "binary_shared_event_batch", payloads: [new Uint8Array(8)] });
  assert.equal(new FrameDecoder(bytes.length - 12).feed(bytes).length, 1);
  const dec = new FrameDecoder(64);
  assert.equal(dec.feed(encodeFrame({ kind: "auth", tenantId: "t", token: "x" })).length, 1);
  dec.maxFrameBytes = 1024;
  assert.equal(dec.feed(encodeFrame({ kind: "publish", tenantId: "t", namespace: "n", stream: "s", payload: new Uint8Array(100) })).length, 1);
});

test("encode checks values", () => {
  const cases: Array<[unknown, string]> = [
    [{ kind: "auth_ok", serverFlags: 65536 }, "out_of_range"],
    [{ kind: "auth_ok", serverFlags: "7" }, "wrong_type"],
    [{ kind: "error" }, "missing_field"],
    [{ kind: "error", message: "\ud800" }, "invalid_utf8"],
    [{ kind: "binary_acked_publish_batch", requestId: 1n, ackMode: "none", tenantId: "t", namespace: "n", stream: "s", payloads: [] }, "invalid_enum_value"],
    [{ kind: "binary_publish_batch", tenantId: "x".repeat(65536), namespace: "n", stream: "s", payloads: [] }, "out_of_range"],
    [{ kind: "nope" }, "unknown_type"],
  ];
  for (const [frame, cls] of cases) {
    assert.throws(() => encodeFrame(frame as Frame), (e: unknown) => e instanceof EncodeError && e.errorClass === cls);
  }
});

test("a publish ack's text is cut on a character boundary", () => {
  const bytes = encodeFrame({ kind: "binary_publish_ack", status: "error", requestId: 1n, message: "a" + "é".repeat(300) });
  const { frame } = decodeFrame(bytes);
  assert.equal(frame.kind, "binary_publish_ack");
  if (frame.kind === "binary_publish_ack") assert.equal(frame.message, "a" + "é".repeat(255));
});

test("fromNeutral checks the flags", () => {
  assert.throws(
    () => fromNeutral({ flags: 4n, kind: "binary_shared_event_batch", fields: { base_offset: 1n, payloads: [] } }),
    (e: unknown) => e instanceof EncodeError && e.errorClass === "invalid_flag_combination",
  );
});
