#!/usr/bin/env python3
"""felix-wire v1 codec in plain Python 3 (standard library only, 3.9+).

Written from docs/protocol.md, vectors/README.md and docs/conformance.md,
not from the Rust code: it is the proof that the vectors and the driver
protocol are language-neutral, and a template for other implementers.

Library use:

    decode(data: bytes, max_frame_bytes=16777216) -> neutral form (dict)
        raises WireError (with .error_class) for invalid input
    encode(neutral: dict) -> bytes (header + payload)
        raises WireError for a neutral form that cannot be encoded

Run as a program, it speaks the codec driver protocol (version 1) on
stdin/stdout: one JSON request per line, one JSON answer per line.
"""

import base64
import binascii
import json
import re
import struct
import sys
import traceback

NAME = "felix-codec-py"
IMPL_VERSION = "1.1"

# ------------------------------------------------------------------- tables
# Everything below is copied by hand from docs/protocol.md (generated from
# spec/felix-wire.yaml); nothing is read from the spec at run time.

MAGIC = b"FLX1"  # 0x464C5831
VERSION = 1
HEADER_LEN = 12
DEFAULT_MAX_FRAME_BYTES = 16777216
KNOWN_FLAGS = 0x003F
JSON_MAX_DEPTH = 64  # container nesting, the top-level object counting as 1
ERROR_TEXT_MAX_BYTES = 512

BINARY_PUBLISH_BATCH = 0x0001
BINARY_EVENT_BATCH = 0x0002
BINARY_EVENT_BATCH_SHARED = 0x0004
BINARY_PUBLISH_ACKED = 0x0008
BINARY_PUBLISH_ACK = 0x0010
EVENT_BATCH_OFFSETS = 0x0020

# Every valid flags value and the payload layout it selects.
COMBINATIONS = {
    0x0000: "json",
    0x0001: "binary_publish_batch",
    0x0009: "binary_acked_publish_batch",
    0x0010: "binary_publish_ack",
    0x0002: "binary_event_batch",
    0x0022: "binary_event_batch",
    0x0004: "binary_shared_event_batch",
    0x0024: "binary_shared_event_batch",
}

# Enums: JSON strings and binary bytes.
ENUM_JSON = {
    "AckMode": ("none", "per_message", "per_batch"),
    "CursorErrorReason": ("too_old", "in_future"),
}
ENUM_BYTES = {
    "AckMode": {1: "per_message", 2: "per_batch"},  # none has no byte
    "AckStatus": {0: "ok", 1: "error"},
}
START_WORDS = ("latest", "earliest")  # StartPosition; or {"offset": u64}

# JSON messages (flags 0x0000): fields in wire order as (name, type, presence).
# types: string u16 u64 bytes list<bytes> AckMode StartPosition CursorErrorReason
# presence: required | omit | null | nullable (see docs/protocol.md)
REQ, OMIT, NULL, NULLABLE = "required", "omit", "null", "nullable"
_STREAM = [("tenant_id", "string", REQ), ("namespace", "string", REQ), ("stream", "string", REQ)]
_CACHE = [("tenant_id", "string", REQ), ("namespace", "string", REQ), ("cache", "string", REQ),
          ("key", "string", REQ)]
MESSAGES = {
    "auth": [("tenant_id", "string", REQ), ("token", "string", REQ), ("client_flags", "u16", OMIT)],
    "auth_ok": [("server_flags", "u16", REQ)],
    "publish": _STREAM + [("payload", "bytes", REQ), ("request_id", "u64", OMIT), ("ack", "AckMode", OMIT)],
    "publish_batch": _STREAM + [("payloads", "list<bytes>", REQ), ("request_id", "u64", OMIT),
                                ("ack", "AckMode", OMIT)],
    "subscribe": _STREAM + [("subscription_id", "u64", OMIT), ("start", "StartPosition", OMIT)],
    "subscribed": [("subscription_id", "u64", REQ)],
    "event_stream_hello": [("subscription_id", "u64", REQ)],
    "event": _STREAM + [("payload", "bytes", REQ), ("offset", "u64", OMIT)],
    "event_batch": _STREAM + [("payloads", "list<bytes>", REQ), ("base_offset", "u64", OMIT)],
    "cache_put": _CACHE + [("value", "bytes", REQ), ("request_id", "u64", OMIT), ("ttl_ms", "u64", NULL)],
    "cache_get": _CACHE + [("request_id", "u64", OMIT)],
    "cache_value": _CACHE + [("value", "bytes", NULLABLE), ("request_id", "u64", OMIT)],
    "cache_ok": [("request_id", "u64", REQ)],
    "publish_ok": [("request_id", "u64", REQ)],
    "publish_error": [("request_id", "u64", REQ), ("message", "string", REQ)],
    "ok": [],
    "error": [("message", "string", REQ)],
    "subscribe_cursor_error": [("reason", "CursorErrorReason", REQ), ("requested", "u64", REQ),
                               ("available", "u64", REQ)],
}

# Binary layouts: fields in wire order as (name, type). Types: u64, str16,
# AckMode/AckStatus (one byte), count (u32, the number of items of the
# bytes32 list that follows; not part of the neutral form), bytes32_list,
# and u64_if_offsets (a u64 present only when EVENT_BATCH_OFFSETS is set;
# null in the neutral form otherwise).
LAYOUTS = {
    "binary_publish_batch": [("tenant_id", "str16"), ("namespace", "str16"), ("stream", "str16"),
                             ("count", "count"), ("payloads", "bytes32_list")],
    "binary_acked_publish_batch": [("request_id", "u64"), ("ack_mode", "AckMode"),
                                   ("tenant_id", "str16"), ("namespace", "str16"), ("stream", "str16"),
                                   ("count", "count"), ("payloads", "bytes32_list")],
    "binary_publish_ack": [("status", "AckStatus"), ("request_id", "u64"), ("message", "str16")],
    "binary_event_batch": [("subscription_id", "u64"), ("base_offset", "u64_if_offsets"),
                           ("count", "count"), ("payloads", "bytes32_list")],
    "binary_shared_event_batch": [("base_offset", "u64_if_offsets"), ("count", "count"),
                                  ("payloads", "bytes32_list")],
}


class WireError(Exception):
    """Invalid input, with its language-neutral error class (vectors/README.md)."""

    def __init__(self, error_class, message):
        super().__init__(message)
        self.error_class = error_class


# ------------------------------------------------------------- frame header
def decode(data, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES):
    """Decodes one frame from the start of `data`; returns the neutral form.

    Checks in the order of vectors/README.md and reports the first failure.
    Bytes after the frame (the next frame on a stream) are not looked at.
    """
    data = bytes(data)
    if len(data) < HEADER_LEN:
        raise WireError("incomplete", "%d of 12 header bytes" % len(data))
    magic = data[0:4]
    version, flags, length = struct.unpack(">HHI", data[4:12])
    if magic != MAGIC:
        raise WireError("bad_magic", "magic 0x%s" % magic.hex())
    if version != VERSION:
        raise WireError("bad_version", "version %d" % version)
    if flags & ~KNOWN_FLAGS:
        raise WireError("unknown_flags", "flags 0x%04x has bits outside 0x003f" % flags)
    if flags not in COMBINATIONS:
        raise WireError("invalid_flag_combination", "flags 0x%04x" % flags)
    if length > max_frame_bytes:
        raise WireError("frame_too_large", "length %d over the cap %d" % (length, max_frame_bytes))
    if len(data) < HEADER_LEN + length:
        raise WireError("incomplete", "%d of %d payload bytes" % (len(data) - HEADER_LEN, length))
    payload = data[HEADER_LEN:HEADER_LEN + length]
    layout = COMBINATIONS[flags]
    if layout == "json":
        kind, fields = decode_json(payload)
    else:
        kind, fields = layout, decode_binary(flags, layout, payload)
    return {"flags": flags, "kind": kind, "fields": fields}


# ---------------------------------------------------------- binary payloads
class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n, what):
        if n > self.remaining():
            raise WireError("unexpected_end", "%s: needs %d bytes, %d left" % (what, n, self.remaining()))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self, size, what):
        return int.from_bytes(self.take(size, what), "big")


def decode_binary(flags, layout, payload):
    r = _Reader(payload)
    fields = {}
    count = None
    for name, ftype in LAYOUTS[layout]:
        if ftype == "u64":
            fields[name] = r.uint(8, name)
        elif ftype == "u64_if_offsets":
            fields[name] = r.uint(8, name) if flags & EVENT_BATCH_OFFSETS else None
        elif ftype == "str16":
            raw = r.take(r.uint(2, name + " length"), name)
            try:
                fields[name] = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise WireError("invalid_utf8", "%s: not UTF-8 at byte %d" % (name, e.start))
        elif ftype in ENUM_BYTES:
            b = r.uint(1, name)
            if b not in ENUM_BYTES[ftype]:
                raise WireError("invalid_enum_byte", "%s: byte %d is not a %s" % (name, b, ftype))
            fields[name] = ENUM_BYTES[ftype][b]
        elif ftype == "count":
            count = r.uint(4, name)
            # Checked before anything is allocated: each item takes at least 4 bytes.
            if count > r.remaining() // 4:
                raise WireError("count_too_large",
                                "%s %d with %d bytes left" % (name, count, r.remaining()))
        elif ftype == "bytes32_list":
            items = []
            for i in range(count):
                what = "%s[%d]" % (name, i)
                items.append(r.take(r.uint(4, what + " length"), what).hex())
            fields[name] = items
        else:
            raise AssertionError(ftype)
    if r.remaining():
        raise WireError("trailing_bytes", "%s: %d bytes after the last field" % (layout, r.remaining()))
    return fields


# -------------------------------------------------------------- JSON reader
class _Obj:
    """A JSON object as its (key, value) pairs in input order."""
    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


class _Num:
    """A JSON number as its text; `is_int` when it has no fraction or exponent."""
    __slots__ = ("text", "is_int")

    def __init__(self, text, is_int):
        self.text = text
        self.is_int = is_int


_WS = re.compile(r"[ \t\n\r]*")
_PLAIN = re.compile(r'[^"\\\x00-\x1f]+')  # a run of string characters needing no care
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class _Parser:
    """A strict RFC 8259 parser (Python's json module is too lenient: it takes
    NaN, Infinity, lone surrogates and non-ASCII digits, and drops duplicate
    keys). Objects keep every pair so duplicates can be judged later."""

    def __init__(self, text):
        self.s = text
        self.i = 0

    def fail(self, why):
        raise WireError("malformed_json", "%s at character %d" % (why, self.i))

    def ws(self):
        self.i = _WS.match(self.s, self.i).end()

    def peek(self):
        return self.s[self.i:self.i + 1]

    def document(self):
        v = self.value(0)
        self.ws()
        if self.i != len(self.s):
            self.fail("data after the JSON value")
        if not isinstance(v, _Obj):
            raise WireError("malformed_json", "the payload is not a JSON object")
        return v

    def value(self, depth):
        """`depth`: how many containers are open around this value."""
        self.ws()
        c = self.peek()
        if c in ("{", "["):
            if depth + 1 > JSON_MAX_DEPTH:
                self.fail("nesting deeper than %d" % JSON_MAX_DEPTH)
            return self.obj(depth + 1) if c == "{" else self.arr(depth + 1)
        if c == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return val
        m = _NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            return _Num(m.group(), m.group(1) is None and m.group(2) is None)
        self.fail("expected a value" if c else "unexpected end")

    def obj(self, depth):
        self.i += 1  # {
        pairs = []
        self.ws()
        if self.peek() == "}":
            self.i += 1
            return _Obj(pairs)
        while True:
            self.ws()
            if self.peek() != '"':
                self.fail("expected a key")
            key = self.string()
            self.ws()
            if self.peek() != ":":
                self.fail("expected ':'")
            self.i += 1
            pairs.append((key, self.value(depth)))
            self.ws()
            c = self.peek()
            self.i += 1
            if c == "}":
                return _Obj(pairs)
            if c != ",":
                self.i -= 1
                self.fail("expected ',' or '}'")

    def arr(self, depth):
        self.i += 1  # [
        items = []
        self.ws()
        if self.peek() == "]":
            self.i += 1
            return items
        while True:
            items.append(self.value(depth))
            self.ws()
            c = self.peek()
            self.i += 1
            if c == "]":
                return items
            if c != ",":
                self.i -= 1
                self.fail("expected ',' or ']'")

    def hex4(self):
        if not _HEX4.match(self.s, self.i):
            self.fail("\\u needs four hex digits")
        self.i += 4
        return int(self.s[self.i - 4:self.i], 16)

    def string(self):
        s = self.s
        self.i += 1  # opening quote
        out = []
        while True:
            m = _PLAIN.match(s, self.i)
            if m:
                out.append(m.group())
                self.i = m.end()
            c = self.peek()
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "":
                self.fail("unterminated string")
            if c != "\\":
                self.fail("raw control character U+%04X in a string" % ord(c))
            e = s[self.i + 1:self.i + 2]
            self.i += 2
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e == "u":
                cp = self.hex4()
                if 0xD800 <= cp <= 0xDBFF:
                    if s[self.i:self.i + 2] != "\\u":
                        self.fail("lone high surrogate")
                    self.i += 2
                    lo = self.hex4()
                    if not 0xDC00 <= lo <= 0xDFFF:
                        self.fail("lone high surrogate")
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                elif 0xDC00 <= cp <= 0xDFFF:
                    self.fail("lone low surrogate")
                out.append(chr(cp))
            else:
                self.i -= 2
                self.fail("invalid escape")


# ------------------------------------------------------------ JSON messages
def _json_type_name(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, _Num):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _uint(v, what, bits):
    if not isinstance(v, _Num):
        raise WireError("wrong_type", "%s: expected an integer, got %s" % (what, _json_type_name(v)))
    if not v.is_int:
        raise WireError("wrong_type", "%s: %s has a fraction or exponent" % (what, v.text))
    text = v.text
    if text.startswith("-"):
        if text != "-0":  # "-0" is the integer zero in JSON
            raise WireError("out_of_range", "%s: %s is negative" % (what, text))
        return 0
    # No leading zeros in JSON, so more than 20 digits is above 2^64-1; this
    # also keeps huge literals away from int() (CPython limits int(str)).
    if len(text) > 20 or int(text) >= 1 << bits:
        raise WireError("out_of_range", "%s: %s does not fit u%d" % (what, text[:40], bits))
    return int(text)


def _b64(v, what):
    if not isinstance(v, str):
        raise WireError("wrong_type", "%s: expected a base64 string, got %s" % (what, _json_type_name(v)))
    try:
        raw = base64.b64decode(v.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise WireError("invalid_base64", "%s: not standard padded base64" % what)
    if base64.b64encode(raw).decode("ascii") != v:  # non-zero trailing bits
        raise WireError("invalid_base64", "%s: not canonical base64" % what)
    return raw.hex()


def _enum(v, what, enum):
    if not isinstance(v, str):
        raise WireError("wrong_type", "%s: expected a string, got %s" % (what, _json_type_name(v)))
    if v not in ENUM_JSON[enum]:
        raise WireError("invalid_enum_value", "%s: %r is not a %s" % (what, v, enum))
    return v


def _json_field(v, ftype, what):
    """Converts one non-null JSON value to its neutral form."""
    if ftype == "string":
        if not isinstance(v, str):
            raise WireError("wrong_type", "%s: expected a string, got %s" % (what, _json_type_name(v)))
        return v
    if ftype == "u16":
        return _uint(v, what, 16)
    if ftype == "u64":
        return _uint(v, what, 64)
    if ftype == "bytes":
        return _b64(v, what)
    if ftype == "list<bytes>":
        if not isinstance(v, list):
            raise WireError("wrong_type", "%s: expected an array, got %s" % (what, _json_type_name(v)))
        return [_b64(x, "%s[%d]" % (what, i)) for i, x in enumerate(v)]
    if ftype in ENUM_JSON:
        return _enum(v, what, ftype)
    if ftype == "StartPosition":
        if isinstance(v, str):
            if v not in START_WORDS:
                raise WireError("invalid_enum_value", "%s: %r is not a StartPosition" % (what, v))
            return v
        if isinstance(v, _Obj):
            found = [x for k, x in v.pairs if k == "offset"]
            if len(found) > 1:
                raise WireError("duplicate_field", "%s.offset given twice" % what)
            if not found:
                raise WireError("missing_field", "%s.offset" % what)
            return {"offset": _uint(found[0], what + ".offset", 64)}
        raise WireError("wrong_type", "%s: expected a string or an object, got %s" % (what, _json_type_name(v)))
    raise AssertionError(ftype)


def decode_json(payload):
    """Decodes a JSON payload; returns (type, neutral fields)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireError("invalid_utf8", "payload is not UTF-8 at byte %d" % e.start)
    pairs = _Parser(text).document().pairs
    types = [v for k, v in pairs if k == "type"]
    if not types:
        raise WireError("missing_field", "type")
    if len(types) > 1:
        raise WireError("duplicate_field", "type given twice")
    ty = types[0]
    if not isinstance(ty, str):
        raise WireError("wrong_type", "type: expected a string, got %s" % _json_type_name(ty))
    if ty not in MESSAGES:
        raise WireError("unknown_type", "no message is called %r" % ty)
    spec = MESSAGES[ty]
    known = {name for name, _, _ in spec}
    given = {}
    for k, v in pairs:
        if k in known:
            if k in given:
                raise WireError("duplicate_field", "%s.%s given twice" % (ty, k))
            given[k] = v
    fields = {}
    for name, ftype, presence in spec:
        what = "%s.%s" % (ty, name)
        if name not in given:
            if presence in (REQ, NULLABLE):
                raise WireError("missing_field", what)
            fields[name] = None
        elif given[name] is None:
            if presence == REQ:
                raise WireError("wrong_type", "%s: null for a required field" % what)
            fields[name] = None
        else:
            fields[name] = _json_field(given[name], ftype, what)
    return ty, fields


# ------------------------------------------------------------------ encoding
def json_string(s):
    """A JSON string exactly as felix-wire writers write it."""
    out = ['"']
    for ch in s:
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
        elif ch < " ":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)  # raw UTF-8, including / and DEL
    out.append('"')
    return "".join(out)


_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _want_str(v, what):
    if not isinstance(v, str):
        raise WireError("wrong_type", "%s: expected a string" % what)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError("invalid_utf8", "%s: lone surrogate" % what)
    return v


def _want_uint(v, what, bits):
    if not isinstance(v, int) or isinstance(v, bool):
        raise WireError("wrong_type", "%s: expected an integer" % what)
    if not 0 <= v < 1 << bits:
        raise WireError("out_of_range", "%s: %d does not fit u%d" % (what, v, bits))
    return v


def _want_hex(v, what):
    if not isinstance(v, str) or not _HEX.fullmatch(v):
        raise WireError("wrong_type", "%s: expected bytes as hex" % what)
    return bytes.fromhex(v)


def _want_hex_list(v, what):
    if not isinstance(v, list):
        raise WireError("wrong_type", "%s: expected an array of hex strings" % what)
    return [_want_hex(x, "%s[%d]" % (what, i)) for i, x in enumerate(v)]


def _want_enum(v, what, values):
    if not isinstance(v, str):
        raise WireError("wrong_type", "%s: expected a string" % what)
    if v not in values:
        raise WireError("invalid_enum_value", "%s: %r is not one of %s" % (what, v, ", ".join(values)))
    return v


def _encode_json_value(v, ftype, what):
    if ftype == "string":
        return json_string(_want_str(v, what))
    if ftype == "u16":
        return str(_want_uint(v, what, 16))
    if ftype == "u64":
        return str(_want_uint(v, what, 64))
    if ftype == "bytes":
        return '"%s"' % base64.b64encode(_want_hex(v, what)).decode("ascii")
    if ftype == "list<bytes>":
        return "[%s]" % ",".join('"%s"' % base64.b64encode(b).decode("ascii")
                                 for b in _want_hex_list(v, what))
    if ftype in ENUM_JSON:
        return json_string(_want_enum(v, what, ENUM_JSON[ftype]))
    if ftype == "StartPosition":
        if isinstance(v, dict):
            if set(v) != {"offset"}:
                raise WireError("wrong_type", '%s: expected {"offset": N}' % what)
            return '{"offset":%d}' % _want_uint(v["offset"], what + ".offset", 64)
        return json_string(_want_enum(v, what, START_WORDS))
    raise AssertionError(ftype)


def _check_field_names(kind, fields, names):
    if not isinstance(fields, dict):
        raise WireError("wrong_type", "fields: expected an object")
    extra = sorted(set(fields) - set(names))
    if extra:
        raise WireError("wrong_type", "%s has no field %s" % (kind, ", ".join(extra)))


def _encode_json(kind, fields):
    spec = MESSAGES[kind]
    _check_field_names(kind, fields, [name for name, _, _ in spec])
    parts = ['{"type":', json_string(kind)]
    for name, ftype, presence in spec:
        v = fields.get(name)
        what = "%s.%s" % (kind, name)
        if v is None:
            if presence == REQ:
                raise WireError("missing_field", "%s is required" % what)
            if presence == OMIT:
                continue
            parts.append(',"%s":null' % name)  # null and nullable: always written
        else:
            parts.append(',"%s":%s' % (name, _encode_json_value(v, ftype, what)))
    parts.append("}")
    return "".join(parts).encode("utf-8")


def _cut_utf8(b, limit):
    """The longest prefix of UTF-8 `b` of at most `limit` bytes ending on a character boundary."""
    if len(b) <= limit:
        return b
    end = limit
    while end > 0 and (b[end] & 0xC0) == 0x80:  # b[end] continues a character: back off
        end -= 1
    return b[:end]


def _encode_binary(kind, flags, fields):
    layout = LAYOUTS[kind]
    names = [name for name, ftype in layout if ftype != "count"]
    _check_field_names(kind, fields, names)
    out = []
    for name, ftype in layout:
        v = fields.get(name)
        if ftype == "count":
            continue  # written with the list
        if ftype == "u64_if_offsets":
            if flags & EVENT_BATCH_OFFSETS:
                if v is None:
                    raise WireError("missing_field", "%s: flags 0x%04x need a %s" % (kind, flags, name))
                out.append(struct.pack(">Q", _want_uint(v, name, 64)))
            elif v is not None:
                raise WireError("invalid_flag_combination",
                                "%s: a %s needs EVENT_BATCH_OFFSETS in the flags" % (kind, name))
            continue
        if v is None:
            raise WireError("missing_field", "%s.%s is required" % (kind, name))
        if ftype == "u64":
            out.append(struct.pack(">Q", _want_uint(v, name, 64)))
        elif ftype == "str16":
            b = _want_str(v, name).encode("utf-8")
            if kind == "binary_publish_ack" and name == "message":
                b = _cut_utf8(b, ERROR_TEXT_MAX_BYTES)  # writers cut the error text
            if len(b) > 0xFFFF:
                raise WireError("out_of_range", "%s: %d bytes do not fit a str16" % (name, len(b)))
            out.append(struct.pack(">H", len(b)) + b)
        elif ftype in ENUM_BYTES:
            by_name = {n: byte for byte, n in ENUM_BYTES[ftype].items()}
            out.append(struct.pack(">B", by_name[_want_enum(v, name, tuple(by_name))]))
        elif ftype == "bytes32_list":
            items = _want_hex_list(v, name)
            out.append(struct.pack(">I", len(items)))
            for b in items:
                out.append(struct.pack(">I", len(b)) + b)
        else:
            raise AssertionError(ftype)
    return b"".join(out)


def _default_flags(kind, fields):
    if kind in MESSAGES:
        return 0x0000
    base = [f for f, layout in COMBINATIONS.items() if layout == kind]
    with_offsets = [f for f in base if f & EVENT_BATCH_OFFSETS]
    if with_offsets and isinstance(fields, dict) and fields.get("base_offset") is not None:
        return with_offsets[0]
    return min(base)


def encode(neutral):
    """Encodes a frame in the neutral form into header + payload bytes.

    `flags` may be left out (or null): it then follows from `kind` (and
    `base_offset` for event batches)."""
    if not isinstance(neutral, dict):
        raise WireError("wrong_type", "the frame must be an object")
    kind, fields = neutral.get("kind"), neutral.get("fields", {})
    if not isinstance(kind, str):
        raise WireError("wrong_type", "kind: expected a string")
    if kind not in MESSAGES and kind not in LAYOUTS:
        raise WireError("unknown_type", "no message or layout is called %r" % kind)
    flags = neutral.get("flags")
    if flags is None:
        flags = _default_flags(kind, fields)
    _want_uint(flags, "flags", 16)
    if COMBINATIONS.get(flags) != ("json" if kind in MESSAGES else kind):
        raise WireError("invalid_flag_combination", "flags 0x%04x do not select %s" % (flags, kind))
    if kind in MESSAGES:
        payload = _encode_json(kind, fields)
    else:
        payload = _encode_binary(kind, flags, fields)
    if len(payload) > 0xFFFFFFFF:
        raise WireError("frame_too_large", "%d payload bytes do not fit the length field" % len(payload))
    return MAGIC + struct.pack(">HHI", VERSION, flags, len(payload)) + payload


# ------------------------------------------------------- driver protocol v1
DRIVER_PROTOCOL = "felix-wire-codec-driver"
DRIVER_VERSION = 1


class BadRequest(Exception):
    """A request this program cannot make sense of (a runner problem, not a vector's)."""


def _frame_bytes(req):
    frame = req.get("frame")
    if not isinstance(frame, str):
        raise BadRequest("decode needs a string \"frame\"")
    digits = "".join(frame.split())  # whitespace is ignored, as in the vector files
    if not _HEX.fullmatch(digits):
        raise BadRequest("\"frame\" is not hex")
    return bytes.fromhex(digits)


def handle(req):
    """Answers one driver request (a dict); returns the response dict."""
    if not isinstance(req, dict):
        return {"id": None, "result": "unsupported", "message": "a request must be a JSON object"}
    op, rid = req.get("op"), req.get("id")
    try:
        if op == "hello":
            if req.get("protocol") != DRIVER_PROTOCOL or req.get("version") != DRIVER_VERSION:
                return {"id": rid, "result": "unsupported",
                        "message": "this testee speaks %s version %d" % (DRIVER_PROTOCOL, DRIVER_VERSION)}
            return {"id": rid, "result": "ok", "name": NAME, "version": IMPL_VERSION}
        if op == "bye":
            return {"id": rid, "result": "ok"}
        if op == "decode":
            data = _frame_bytes(req)
            cap = req.get("maxFrameBytes", DEFAULT_MAX_FRAME_BYTES)
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                raise BadRequest("\"maxFrameBytes\" must be a non-negative integer")
            return {"id": rid, "result": "ok", "decoded": decode(data, cap)}
        if op == "encode":
            if "decoded" not in req:
                raise BadRequest("encode needs \"decoded\"")
            return {"id": rid, "result": "ok", "frame": encode(req["decoded"]).hex()}
        return {"id": rid, "result": "unsupported", "message": "unknown op %r" % (op,)}
    except WireError as e:
        return {"id": rid, "result": "error", "errorClass": e.error_class, "message": str(e)}
    except BadRequest as e:
        return {"id": rid, "result": "unsupported", "message": "bad request: %s" % e}
    except Exception as e:  # a bug here: say so (the case fails) and keep serving
        traceback.print_exc(file=sys.stderr)
        return {"id": rid, "result": "error", "errorClass": "internal_error",
                "message": "%s: %s" % (type(e).__name__, e)}


def _write(resp):
    # ASCII-only compact JSON: independent of the locale's encoding.
    sys.stdout.write(json.dumps(resp, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            return 0  # end of input without bye
        if not line.strip():
            continue
        try:
            req = json.loads(line.decode("utf-8"))
        except ValueError as e:  # includes UnicodeDecodeError
            print("felix_codec.py: unreadable request: %s" % e, file=sys.stderr)
            _write({"id": None, "result": "unsupported", "message": "unreadable request: %s" % e})
            continue
        _write(handle(req))
        if isinstance(req, dict) and req.get("op") == "bye":
            return 0


if __name__ == "__main__":
    sys.exit(main())
