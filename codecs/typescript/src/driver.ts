/**
 * The generated codec as a conformance testee: speaks the codec driver
 * protocol (version 1, docs/conformance.md) on stdin/stdout, one JSON
 * request per line, one JSON answer per line, in order.
 *
 *     cargo run -p felix-conformance -- codec --cmd "node codecs/typescript/dist/driver.js"
 *
 * Requests are parsed with the codec's own strict JSON parser, so u64
 * values above 2^53 stay exact (`JSON.parse` would round them).
 */

import { createInterface } from "node:readline";

import { decodeFrame, encodeFrame } from "./codec.js";
import { DEFAULT_MAX_FRAME_BYTES } from "./generated/constants.js";
import { DecodeError, EncodeError } from "./generated/errors.js";
import { fromNeutral, toNeutral } from "./generated/frame.js";
import * as json from "./runtime/json.js";
import * as neutral from "./runtime/neutral.js";
import * as utf8 from "./runtime/utf8.js";

const NAME = "felix-wire-ts (generated)";
const VERSION = "0.1.0";
const PROTOCOL = "felix-wire-codec-driver";

type Response = { [key: string]: neutral.Value };

class BadRequest extends Error {}

function frameBytes(req: neutral.Fields): Uint8Array {
  const frame = req["frame"];
  if (typeof frame !== "string") throw new BadRequest('decode needs a string "frame"');
  const digits = frame.replace(/\s+/g, "");
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(digits)) throw new BadRequest('"frame" is not hex');
  return neutral.fromHex(digits, "frame");
}

/** Answers one request with one response. */
export function handle(req: neutral.Value): Response {
  if (!neutral.isObject(req)) return { id: null, result: "unsupported", message: "a request must be a JSON object" };
  const id = req["id"] ?? null;
  try {
    switch (req["op"]) {
      case "hello":
        if (req["protocol"] !== PROTOCOL || req["version"] !== 1n) {
          return { id, result: "unsupported", message: `this testee speaks ${PROTOCOL} version 1` };
        }
        return { id, result: "ok", name: NAME, version: VERSION };
      case "bye":
        return { id, result: "ok" };
      case "decode": {
        const data = frameBytes(req);
        const cap = req["maxFrameBytes"] ?? BigInt(DEFAULT_MAX_FRAME_BYTES);
        if (typeof cap !== "bigint" || cap < 0n) throw new BadRequest('"maxFrameBytes" must be a non-negative integer');
        const { frame } = decodeFrame(data, Number(cap));
        return { id, result: "ok", decoded: toNeutral(frame) };
      }
      case "encode": {
        if (!("decoded" in req)) throw new BadRequest('encode needs "decoded"');
        const frame = fromNeutral(req["decoded"]);
        return { id, result: "ok", frame: neutral.toHex(encodeFrame(frame)) };
      }
      default:
        return { id, result: "unsupported", message: `unknown op ${neutral.stringify(req["op"] ?? null)}` };
    }
  } catch (e) {
    if (e instanceof DecodeError || e instanceof EncodeError) {
      return { id, result: "error", errorClass: e.errorClass, message: e.message };
    }
    if (e instanceof BadRequest) return { id, result: "unsupported", message: `bad request: ${e.message}` };
    // A bug: say so (the case fails) and keep serving.
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    return { id, result: "error", errorClass: "internal_error", message: String(e) };
  }
}

function main(): void {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    if (line.trim() === "") return;
    let req: neutral.Value;
    let resp: Response;
    try {
      req = neutral.fromNode(json.parseValue(utf8.encode(line), 0, 256));
      resp = handle(req);
    } catch (e) {
      req = null;
      resp = { id: null, result: "unsupported", message: `unreadable request: ${String(e)}` };
    }
    process.stdout.write(neutral.stringify(resp) + "\n");
    if (neutral.isObject(req) && req["op"] === "bye") {
      lines.close();
      process.stdin.destroy();
    }
  });
}

main();
