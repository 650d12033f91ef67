#!/usr/bin/env python3
"""felix-wire v1 codec in plain Python 3 (standard library only).

Written from docs/protocol.md, vectors/README.md and docs/conformance.md,
not from the Rust code: it is the proof that the vectors and the driver
protocol are language-neutral, and a template for other implementers.

Run as a program, it speaks the codec driver protocol (version 1) on
stdin/stdout: one JSON request per line, one JSON answer per line.
"""

import base64
import binascii
import json
import struct
import sys

MAGIC = b"FLX1"
VERSION = 1
HEADER_LEN = 12
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
KNOWN_FLAGS = 0x003F
MAX_DEPTH = 64  # container nesting, the top-level object counting as 1

# Valid flags values and the layout each selects.
LAYOUTS = {
    0x0000: "json",
    0x0001: "binary_publish_batch",
    0x0009: "binary_acked_publish_batch",
    0x0010: "binary_publish_ack",
    0x0002: "binary_event_batch",
    0x0022: "binary_event_batch",
    0x0004: "binary_shared_event_batch",
    0x0024: "binary_shared_event_batch",
}
OFFSETS = 0x0020

ACK_MODE = ("none", "per_message", "per_batch")
ACK_MODE_BYTE = {1: "per_message", 2: "per_batch"}
ACK_STATUS_BYTE = {0: "ok", 1: "error"}
CURSOR_REASON = ("too_old", "in_future")

# JSON messages: (field, type, presence) in wire order.
# types: str u16 u64 bytes bytes_list ack start reason
S, OM, NU, NB = "required", "omit", "null", "nullable"
MESSAGES = {
    "auth": [("tenant_id", "str", S), ("token", "str", S), ("client_flags", "u16", OM)],
    "auth_ok": [("server_flags", "u16", S)],
    "publish": [("tenant_id", "str", S), ("namespace", "str", S), ("stream", "str", S), ("payload", "bytes", S),
                ("request_id", "u64", OM), ("ack", "ack", OM)],
    "publish_batch": [("tenant_id", "str", S), ("namespace", "str", S), ("stream", "str", S), ("payloads", "bytes_list", S),
                      ("request_id", "u64", OM), ("ack", "ack", OM)],
    "subscribe": [("tenant_id", "str", S), ("namespace", "str", S), ("stream", "str", S), ("subscription_id", "u64", OM),
                  ("start", "start", OM)],
    "subscribed": [("subscription_id", "u64", S)],
    "event_stream_hello": [("subscription_id", "u64", S)],
    "event": [("tenant_id", "str", S), ("namespace", "str", S), ("stream", "str", S), ("payload", "bytes", S), ("offset", "u64", OM)],
    "event_batch": [("tenant_id", "str", S), ("namespace", "str", S), ("stream", "str", S), ("payloads", "bytes_list", S),
                    ("base_offset", "u64", OM)],
    "cache_put": [("tenant_id", "str", S), ("namespace", "str", S), ("cache", "str", S), ("key", "str", S), ("value", "bytes", S),
                  ("request_id", "u64", OM), ("ttl_ms", "u64", NU)],
    "cache_get": [("tenant_id", "str", S), ("namespace", "str", S), ("cache", "str", S), ("key", "str", S), ("request_id", "u64", OM)],
    "cache_value": [("tenant_id", "str", S), ("namespace", "str", S), ("cache", "str", S), ("key", "str", S), ("value", "bytes", NB),
                    ("request_id", "u64", OM)],
    "cache_ok": [("request_id", "u64", S)],
    "publish_ok": [("request_id", "u64", S)],
    "publish_error": [("request_id", "u64", S), ("message", "str", S)],
    "ok": [],
    "error": [("message", "str", S)],
    "subscribe_cursor_error": [("reason", "reason", S), ("requested", "u64", S), ("available", "u64", S)],
}


class WireError(Exception):
    """A decode error with its language-neutral class."""

    def __init__(self, error_class, message):
        super().__init__(message)
        self.error_class = error_class


# ---------------------------------------------------------------- JSON reader
class _Json:
    """A strict RFC 8259 parser that keeps object keys in order (as pairs)."""

    def __init__(self, text):
        self.s = text
        self.i = 0

    def fail(self, why):
        raise WireError("malformed_json", f"{why} at character {self.i}")

    def ws(self):
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t\n\r":
            i += 1
        self.i = i

    def value(self, depth):
        """`depth` is the number of containers open around this value."""
        self.ws()
        if self.i >= len(self.s):
            self.fail("unexpected end")
        c = self.s[self.i]
        if c in "{[" and depth + 1 > MAX_DEPTH:
            self.fail("nesting deeper than 64")
        if c == "{":
            return self.obj(depth)
        if c == "[":
            return self.arr(depth)
        if c == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return val
        if c == "-" or c.isdigit():
            return self.number()
        self.fail("expected a value")

    def obj(self, depth):
        self.i += 1
        pairs = []
        self.ws()
        if self.s[self.i:self.i + 1] == "}":
            self.i += 1
            return ("obj", pairs)
        while True:
            self.ws()
            if self.s[self.i:self.i + 1] != '"':
                self.fail("expected a key")
            key = self.string()
            self.ws()
            if self.s[self.i:self.i + 1] != ":":
                self.fail("expected ':'")
            self.i += 1
            pairs.append((key, self.value(depth + 1)))
            self.ws()
            c = self.s[self.i:self.i + 1]
            self.i += 1
            if c == "}":
                return ("obj", pairs)
            if c != ",":
                self.fail("expected ',' or '}'")

    def arr(self, depth):
        self.i += 1
        items = []
        self.ws()
        if self.s[self.i:self.i + 1] == "]":
            self.i += 1
            return items
        while True:
            items.append(self.value(depth + 1))
            self.ws()
            c = self.s[self.i:self.i + 1]
            self.i += 1
            if c == "]":
                return items
            if c != ",":
                self.fail("expected ',' or ']'")

    def hex4(self):
        h = self.s[self.i:self.i + 4]
        if len(h) != 4 or any(ch not in "0123456789abcdefABCDEF" for ch in h):
            self.fail("invalid unicode escape")
        self.i += 4
        return int(h, 16)

    def string(self):
        self.i += 1
        out = []
        s = self.s
        while True:
            if self.i >= len(s):
                self.fail("unterminated string")
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if ord(c) < 0x20:
                self.fail("raw control character in a string")
            if c != "\\":
                out.append(c)
                self.i += 1
                continue
            e = s[self.i + 1:self.i + 2]
            self.i += 2
            simple = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
            if e in simple:
                out.append(simple[e])
            elif e == "u":
                cp = self.hex4()
                if 0xD800 <= cp <= 0xDBFF:
                    if s[self.i:self.i + 2] != "\\u":
                        self.fail("unpaired surrogate")
                    self.i += 2
                    lo = self.hex4()
                    if not 0xDC00 <= lo <= 0xDFFF:
                        self.fail("unpaired surrogate")
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                elif 0xDC00 <= cp <= 0xDFFF:
                    self.fail("unpaired surrogate")
                out.append(chr(cp))
            else:
                self.fail("invalid escape")

    def number(self):
        s, start = self.s, self.i
        i = start
        if s[i:i + 1] == "-":
            i += 1
        if s[i:i + 1] == "0":
            i += 1
        elif s[i:i + 1].isdigit():
            while s[i:i + 1].isdigit():
                i += 1
        else:
            self.i = i
            self.fail("invalid number")
        is_int = True
        if s[i:i + 1] == ".":
            is_int = False
            i += 1
            if not s[i:i + 1].isdigit():
                self.i = i
                self.fail("invalid number")
            while s[i:i + 1].isdigit():
                i += 1
        if s[i:i + 1] in ("e", "E"):
            is_int = False
            i += 1
            if s[i:i + 1] in ("+", "-"):
                i += 1
            if not s[i:i + 1].isdigit():
                self.i = i
                self.fail("invalid number")
            while s[i:i + 1].isdigit():
                i += 1
        self.i = i
        return ("num", s[start:i], is_int)


def _parse_json(payload):
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("invalid_utf8", f"payload is not UTF-8 at byte {e.start}")
    p = _Json(text)
    v = p.value(0)
    p.ws()
    if p.i != len(text):
        p.fail("data after the JSON value")
    if not (isinstance(v, tuple) and v[0] == "obj"):
        raise WireError("malformed_json", "the payload is not a JSON object")
    return v[1]


def _uint(v, name, bits):
    if not (isinstance(v, tuple) and v[0] == "num"):
        raise WireError("wrong_type", f"{name}: expected an unsigned integer")
    if not v[2]:
        raise WireError("wrong_type", f"{name}: expected an integer without fraction or exponent")
    n = int(v[1])
    if n < 0 or n >= 1 << bits:
        raise WireError("out_of_range", f"{name}: {v[1]} does not fit u{bits}")
    return n


def _b64(v, name):
    if not isinstance(v, str):
        raise WireError("wrong_type", f"{name}: expected a base64 string")
    try:
        raw = base64.b64decode(v.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise WireError("invalid_base64", f"{name}: not standard padded base64")
    if base64.b64encode(raw).decode("ascii") != v:
        raise WireError("invalid_base64", f"{name}: not canonical base64")
    return raw.hex()


def _field(v, ftype, name):
    if ftype == "str":
        if not isinstance(v, str):
            raise WireError("wrong_type", f"{name}: expected a string")
        return v
    if ftype == "u16":
        return _uint(v, name, 16)
    if ftype == "u64":
        return _uint(v, name, 64)
    if ftype == "bytes":
        return _b64(v, name)
    if ftype == "bytes_list":
        if not isinstance(v, list):
            raise WireError("wrong_type", f"{name}: expected an array")
        return [_b64(x, name) for x in v]
    if ftype in ("ack", "reason"):
        if not isinstance(v, str):
            raise WireError("wrong_type", f"{name}: expected a string")
        allowed = ACK_MODE if ftype == "ack" else CURSOR_REASON
        if v not in allowed:
            raise WireError("invalid_enum_value", f"{name}: {v!r} is not one of {allowed}")
        return v
    if ftype == "start":
        if isinstance(v, str):
            if v not in ("latest", "earliest"):
                raise WireError("invalid_enum_value", f"{name}: {v!r}")
            return v
        if isinstance(v, tuple) and v[0] == "obj":
            found = [val for key, val in v[1] if key == "offset"]
            if len(found) > 1:
                raise WireError("duplicate_field", f"{name}.offset given twice")
            if not found:
                raise WireError("missing_field", f"{name}.offset")
            return {"offset": _uint(found[0], name + ".offset", 64)}
        raise WireError("wrong_type", f"{name}: expected a string or an object")
    raise AssertionError(ftype)


def decode_json(payload):
    pairs = _parse_json(payload)
    types = [v for k, v in pairs if k == "type"]
    if not types:
        raise WireError("missing_field", "type")
    ty = types[0]
    if not isinstance(ty, str):
        raise WireError("wrong_type", "type: expected a string")
    if ty not in MESSAGES:
        raise WireError("unknown_type", f"unknown message type {ty!r}")
    spec = MESSAGES[ty]
    known = {name for name, _, _ in spec}
    seen = {}
    for k, v in pairs:
        if k in known:
            if k in seen:
                raise WireError("duplicate_field", f"{ty}.{k} given twice")
            seen[k] = v
    fields = {}
    for name, ftype, presence in spec:
        qualified = f"{ty}.{name}"
        if name not in seen:
            if presence in (S, NB):
                raise WireError("missing_field", qualified)
            fields[name] = None
            continue
        v = seen[name]
        if v is None:
            if presence == S:
                raise WireError("wrong_type", f"{qualified}: null for a required field")
            fields[name] = None
            continue
        fields[name] = _field(v, ftype, qualified)
    return ty, fields


# ---------------------------------------------------------- binary payloads
class _Cursor:
    def __init__(self, data):
        self.d = data
        self.i = 0

    def take(self, n, name):
        if self.i + n > len(self.d):
            raise WireError("unexpected_end", f"{name}: needs {n} bytes, {len(self.d) - self.i} left")
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def uint(self, size, name):
        return int.from_bytes(self.take(size, name), "big")

    def str16(self, name):
        raw = self.take(self.uint(2, name), name)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("invalid_utf8", f"{name} is not UTF-8")

    def count(self, name):
        n = self.uint(4, name)
        if n > (len(self.d) - self.i) // 4:
            raise WireError("count_too_large", f"{name}: {n} items cannot fit")
        return n

    def payloads(self, name):
        n = self.count(name + ".count")
        return [self.take(self.uint(4, name), name).hex() for _ in range(n)]

    def finish(self, layout):
        if self.i != len(self.d):
            raise WireError("trailing_bytes", f"{layout}: {len(self.d) - self.i} bytes after the last field")


def decode_binary(flags, layout, payload):
    c = _Cursor(payload)
    f = {}
    if layout in ("binary_publish_batch", "binary_acked_publish_batch"):
        if layout == "binary_acked_publish_batch":
            f["request_id"] = c.uint(8, "request_id")
            b = c.uint(1, "ack_mode")
            if b not in ACK_MODE_BYTE:
                raise WireError("invalid_enum_byte", f"ack_mode {b}")
            f["ack_mode"] = ACK_MODE_BYTE[b]
        f["tenant_id"] = c.str16("tenant_id")
        f["namespace"] = c.str16("namespace")
        f["stream"] = c.str16("stream")
        f["payloads"] = c.payloads("payloads")
    elif layout == "binary_publish_ack":
        b = c.uint(1, "status")
        if b not in ACK_STATUS_BYTE:
            raise WireError("invalid_enum_byte", f"status {b}")
        f["status"] = ACK_STATUS_BYTE[b]
        f["request_id"] = c.uint(8, "request_id")
        f["message"] = c.str16("message")
    else:
        if layout == "binary_event_batch":
            f["subscription_id"] = c.uint(8, "subscription_id")
        f["base_offset"] = c.uint(8, "base_offset") if flags & OFFSETS else None
        f["payloads"] = c.payloads("payloads")
    c.finish(layout)
    return f


def decode(data, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES):
    """Decodes exactly one frame; returns the neutral form or raises WireError."""
    if len(data) < HEADER_LEN:
        raise WireError("incomplete", f"{len(data)} of 12 header bytes")
    magic, version, flags, length = data[:4], *struct.unpack(">HHI", data[4:12])
    if magic != MAGIC:
        raise WireError("bad_magic", f"magic {magic.hex()}")
    if version != VERSION:
        raise WireError("bad_version", f"version {version}")
    if flags & ~KNOWN_FLAGS:
        raise WireError("unknown_flags", f"flags {flags:#06x}")
    if flags not in LAYOUTS:
        raise WireError("invalid_flag_combination", f"flags {flags:#06x}")
    if length > max_frame_bytes:
        raise WireError("frame_too_large", f"length {length} over {max_frame_bytes}")
    if len(data) < HEADER_LEN + length:
        raise WireError("incomplete", f"payload {len(data) - HEADER_LEN} of {length} bytes")
    payload = data[HEADER_LEN:HEADER_LEN + length]
    layout = LAYOUTS[flags]
    if layout == "json":
        kind, fields = decode_json(payload)
    else:
        kind, fields = layout, decode_binary(flags, layout, payload)
    return {"flags": flags, "kind": kind, "fields": fields}


# ------------------------------------------------------------------ encoding
def json_string(s):
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _enc_value(ftype, v):
    if ftype in ("str", "ack", "reason"):
        return json_string(v)
    if ftype in ("u16", "u64"):
        return str(int(v))
    if ftype == "bytes":
        return json_string(base64.b64encode(bytes.fromhex(v)).decode("ascii"))
    if ftype == "bytes_list":
        return "[" + ",".join(_enc_value("bytes", x) for x in v) + "]"
    if ftype == "start":
        if isinstance(v, dict):
            return '{"offset":%d}' % int(v["offset"])
        return json_string(v)
    raise AssertionError(ftype)


def _s16(text):
    b = text.encode("utf-8")
    return struct.pack(">H", len(b)) + b


def _list(hexes):
    out = struct.pack(">I", len(hexes))
    for h in hexes:
        b = bytes.fromhex(h)
        out += struct.pack(">I", len(b)) + b
    return out


def encode(neutral):
    """Encodes the neutral form into header + payload bytes."""
    kind, f = neutral["kind"], neutral["fields"]
    if kind in MESSAGES:
        parts = ['{"type":' + json_string(kind)]
        for name, ftype, presence in MESSAGES[kind]:
            v = f.get(name)
            if v is None:
                if presence == OM:
                    continue
                if presence == S:
                    raise ValueError(f"{kind}.{name} is required")
                parts.append(f',"{name}":null')
            else:
                parts.append(f',"{name}":' + _enc_value(ftype, v))
        flags, payload = 0, ("".join(parts) + "}").encode("utf-8")
    elif kind in ("binary_publish_batch", "binary_acked_publish_batch"):
        payload = b""
        flags = 0x0001
        if kind == "binary_acked_publish_batch":
            flags = 0x0009
            byte = {v: k for k, v in ACK_MODE_BYTE.items()}[f["ack_mode"]]
            payload += struct.pack(">QB", f["request_id"], byte)
        payload += _s16(f["tenant_id"]) + _s16(f["namespace"]) + _s16(f["stream"]) + _list(f["payloads"])
    elif kind == "binary_publish_ack":
        flags = 0x0010
        status = {v: k for k, v in ACK_STATUS_BYTE.items()}[f["status"]]
        payload = struct.pack(">BQ", status, f["request_id"]) + _s16(f["message"])
    elif kind in ("binary_event_batch", "binary_shared_event_batch"):
        flags = 0x0002 if kind == "binary_event_batch" else 0x0004
        payload = struct.pack(">Q", f["subscription_id"]) if kind == "binary_event_batch" else b""
        if f.get("base_offset") is not None:
            flags |= OFFSETS
            payload += struct.pack(">Q", f["base_offset"])
        payload += _list(f["payloads"])
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return MAGIC + struct.pack(">HHI", VERSION, flags, len(payload)) + payload


# ------------------------------------------------------------ driver protocol
def handle(req):
    op, rid = req.get("op"), req.get("id")
    if op == "hello":
        return {"id": rid, "result": "ok", "name": "felix-codec-py", "version": "1.0"}
    if op == "bye":
        return {"id": rid, "result": "ok"}
    if op == "decode":
        try:
            data = bytes.fromhex("".join(req["frame"].split()))
            return {"id": rid, "result": "ok", "decoded": decode(data, req.get("maxFrameBytes", DEFAULT_MAX_FRAME_BYTES))}
        except WireError as e:
            return {"id": rid, "result": "error", "errorClass": e.error_class, "message": str(e)}
    if op == "encode":
        try:
            return {"id": rid, "result": "ok", "frame": encode(req["decoded"]).hex()}
        except (KeyError, ValueError, TypeError) as e:
            return {"id": rid, "result": "error", "errorClass": "encode", "message": str(e)}
    return {"id": rid, "result": "unsupported", "message": f"unknown op {op!r}"}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        sys.stdout.write(json.dumps(handle(req), ensure_ascii=False) + "\n")
        sys.stdout.flush()
        if req.get("op") == "bye":
            return


if __name__ == "__main__":
    main()
