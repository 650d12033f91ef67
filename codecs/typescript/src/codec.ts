/**
 * Frames from bytes and back: the header checks, one-shot decoding, the
 * streaming `FrameDecoder` and `encodeFrame`.
 *
 * Like the Rust codec, decoding is two-phase: the 12-byte header is checked
 * first (magic, version, flags, then the length against the receiver's
 * cap), which says how long the frame is; only then is the payload buffered
 * and parsed. A `DecodeError` of class `incomplete` means "need more
 * bytes"; every other one is final for the stream.
 */

import { DEFAULT_MAX_FRAME_BYTES, HEADER_LEN, KNOWN_FLAGS, MAGIC, VERSION } from "./generated/constants.js";
import { DecodeError, EncodeError } from "./generated/errors.js";
import { type Frame, LAYOUT_FOR_FLAGS, decodePayload, encodePayload, frameFlags } from "./generated/frame.js";

/** A checked frame header. */
export interface Header {
  readonly flags: number;
  /** Payload bytes; within the cap it was checked against. */
  readonly length: number;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Checks the header at the start of `data` in the spec's order: whole
 * header present, magic, version, unknown flag bits, flag combination, then
 * `length` against `maxFrameBytes`. Payload bytes are not looked at, so a
 * header announcing too much is `frame_too_large`, never `incomplete`.
 */
export function parseHeader(data: Uint8Array, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): Header {
  if (data.length < HEADER_LEN) {
    throw new DecodeError("incomplete", null, data.length, `${data.length} of ${HEADER_LEN} header bytes`);
  }
  const v = view(data);
  const magic = v.getUint32(0);
  if (magic !== MAGIC) {
    throw new DecodeError("bad_magic", "header.magic", 0, `expected 0x${MAGIC.toString(16)}, found 0x${magic.toString(16)}`);
  }
  const version = v.getUint16(4);
  if (version !== VERSION) {
    throw new DecodeError("bad_version", "header.version", 4, `expected ${VERSION}, found ${version}`);
  }
  const flags = v.getUint16(6);
  if ((flags & ~KNOWN_FLAGS) !== 0) {
    throw new DecodeError("unknown_flags", "header.flags", 6, `unknown flag bits 0x${(flags & ~KNOWN_FLAGS).toString(16)}`);
  }
  if (!LAYOUT_FOR_FLAGS.has(flags)) {
    throw new DecodeError("invalid_flag_combination", "header.flags", 6, `0x${flags.toString(16)} is not a valid combination`);
  }
  const length = v.getUint32(8);
  if (length > maxFrameBytes) {
    throw new DecodeError("frame_too_large", "header.length", 8, `${length} bytes exceeds the frame cap of ${maxFrameBytes}`);
  }
  return { flags, length };
}

/**
 * Decodes the frame at the start of `data`; returns it and how many bytes
 * it took (bytes after it, the next frame on a stream, are not looked at).
 * Throws `DecodeError`: class `incomplete` when `data` ends early.
 */
export function decodeFrame(
  data: Uint8Array,
  maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES,
): { frame: Frame; size: number } {
  const header = parseHeader(data, maxFrameBytes);
  const size = HEADER_LEN + header.length;
  if (data.length < size) throw new DecodeError("incomplete", null, data.length, `${data.length} of ${size} frame bytes`);
  return { frame: decodePayload(header.flags, data.subarray(HEADER_LEN, size)), size };
}

/**
 * Splits a byte stream into frames.
 *
 * Feed it bytes as they arrive, in pieces of any size; `feed` returns the
 * frames completed so far. The header is checked as soon as its 12 bytes
 * are in, before a single payload byte is buffered, so a peer cannot make
 * the decoder hold more than the cap. An error is final: the framing can
 * no longer be trusted, and later calls throw it again.
 */
export class FrameDecoder {
  /** Stream bytes taken by the frames decoded so far: add it to an error's
   * frame offset to find the byte in the stream. */
  streamOffset = 0;
  private readonly head = new Uint8Array(HEADER_LEN);
  private headLen = 0;
  private header: Header | null = null;
  private payload = new Uint8Array(0);
  private payloadLen = 0;
  private error: DecodeError | null = null;

  /** `maxFrameBytes`: the payload cap for frames whose header is still to
   * come (a broker may start a stream small and raise it after auth). */
  constructor(public maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held for the frame in progress. */
  get buffered(): number {
    return this.header === null ? this.headLen : this.payloadLen;
  }

  /** True when no partial frame is buffered (a stream may end here). */
  atBoundary(): boolean {
    return this.header === null && this.headLen === 0;
  }

  /** Takes the next bytes of the stream; returns every frame they complete. */
  feed(chunk: Uint8Array): Frame[] {
    if (this.error !== null) throw this.error;
    try {
      return this.take(chunk);
    } catch (e) {
      if (e instanceof DecodeError) this.error = e;
      throw e;
    }
  }

  private take(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    let pos = 0;
    while (pos < chunk.length || (this.header !== null && this.payloadLen === this.header.length)) {
      if (this.header === null) {
        const n = Math.min(HEADER_LEN - this.headLen, chunk.length - pos);
        this.head.set(chunk.subarray(pos, pos + n), this.headLen);
        this.headLen += n;
        pos += n;
        if (this.headLen < HEADER_LEN) break;
        this.header = parseHeader(this.head, this.maxFrameBytes);
        this.payload = new Uint8Array(this.header.length); // within the cap
        this.payloadLen = 0;
      }
      const n = Math.min(this.header.length - this.payloadLen, chunk.length - pos);
      this.payload.set(chunk.subarray(pos, pos + n), this.payloadLen);
      this.payloadLen += n;
      pos += n;
      if (this.payloadLen === this.header.length) {
        const header = this.header;
        this.header = null;
        this.headLen = 0;
        frames.push(decodePayload(header.flags, this.payload));
        this.streamOffset += HEADER_LEN + header.length;
      }
    }
    return frames;
  }
}

/** Header plus payload for `frame`. Every field is checked first: a value
 * that does not fit its wire form throws `EncodeError`. */
export function encodeFrame(frame: Frame): Uint8Array {
  const payload = encodePayload(frame);
  if (payload.length > 0xffffffff) throw new EncodeError("frame_too_large", null, `${payload.length} payload bytes`);
  const out = new Uint8Array(HEADER_LEN + payload.length);
  const v = view(out);
  v.setUint32(0, MAGIC);
  v.setUint16(4, VERSION);
  v.setUint16(6, frameFlags(frame));
  v.setUint32(8, payload.length);
  out.set(payload, HEADER_LEN);
  return out;
}
