/**
 * felix-wire v1 codec for TypeScript and JavaScript (Node 18+, no runtime
 * dependencies). Generated from `spec/felix-wire.yaml` by `felix-codegen`,
 * like the Rust codec, and checked against the same test vectors.
 *
 * ```ts
 * import { encodeFrame, decodeFrame, FrameDecoder, type Publish } from "felix-wire";
 * const publish: Publish = { kind: "publish", tenantId: "t1", namespace: "default",
 *   stream: "orders", payload: new TextEncoder().encode("hello"), ack: "none" };
 * const bytes = encodeFrame(publish);
 * const { frame, size } = decodeFrame(bytes);
 * ```
 *
 * Layout:
 * - `generated/` (`@generated`, never edited by hand): constants and flag
 *   bits, error classes, enums, one module per JSON message and per binary
 *   layout, the `Frame` union, its payload codec and the neutral form.
 * - `codec.ts`: the header checks, `decodeFrame`, the streaming
 *   `FrameDecoder` and `encodeFrame`.
 * - `runtime/`: the strict JSON parser and writers (`json.ts`), the binary
 *   reader and writer (`binary.ts`), strict base64 and UTF-8, and the
 *   neutral form's helpers (`neutral.ts`).
 * - `driver.ts`: the conformance driver (not part of the library API).
 */

export * from "./generated/index.js";
export { type Header, FrameDecoder, decodeFrame, encodeFrame, parseHeader } from "./codec.js";
