"""JSON payloads: a strict RFC 8259 parser over bytes and byte-exact writers.

Python's ``json`` module is too lenient for a wire codec: it accepts NaN,
Infinity, lone surrogates and non-ASCII digits, keeps only the last of
duplicate keys, and has no depth bound. This parser keeps every pair of an
object (so the generated code can judge duplicates), keeps numbers as text
(so ``1.0`` and ``1e3`` are not integers and u64 values stay exact), and
works on the payload's bytes, so every error names a byte offset in the
frame.

A parsed value is a ``Node``: the value and the frame offset where it
starts. Values are ``str``, ``bool``, ``None``, ``Num``, a ``list`` of
nodes or an ``Obj``.

The generated message modules call the readers (``required``, ``optional``,
``present``, ``read_*``) and writers (``w_*``) below; nothing here knows any
message.
"""

import base64
import binascii
import re
from typing import Dict, FrozenSet, List, NamedTuple, Optional, Tuple

from .generated import errors as E


class Num:
    """A JSON number as its text; ``is_int`` when it has no fraction or exponent."""

    __slots__ = ("text", "is_int")

    def __init__(self, text: str, is_int: bool):
        self.text = text
        self.is_int = is_int


class Node(NamedTuple):
    """A parsed value and the frame offset of its first byte."""

    value: object
    at: int


class Obj:
    """A JSON object: every (key, node, key offset) pair in input order."""

    __slots__ = ("pairs", "at")

    def __init__(self, pairs: List[Tuple[str, Node, int]], at: int):
        self.pairs = pairs
        self.at = at


_WS = re.compile(rb"[ \t\n\r]*")
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]+')  # string bytes that need no care
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HEX4 = re.compile(rb"[0-9a-fA-F]{4}")
_ESCAPES = {
    ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b",
    ord("f"): "\f", ord("n"): "\n", ord("r"): "\r", ord("t"): "\t",
}
_WORDS = ((b"true", True), (b"false", False), (b"null", None))


class _Parser:
    def __init__(self, data: bytes, base: int, max_depth: int):
        self.s = data
        self.i = 0
        self.base = base
        self.max_depth = max_depth

    def fail(self, why: str):
        raise E.MalformedJsonError("json", self.base + self.i, why)

    def ws(self) -> None:
        self.i = _WS.match(self.s, self.i).end()

    def peek(self) -> int:
        return self.s[self.i] if self.i < len(self.s) else -1

    def document(self) -> Obj:
        self.ws()
        if self.peek() != ord("{"):
            self.fail("the payload is not a JSON object")
        v = self.value(0)
        self.ws()
        if self.i != len(self.s):
            self.fail("data after the JSON object")
        return v.value

    def value(self, depth: int) -> Node:
        """``depth``: how many containers are open around this value."""
        self.ws()
        at = self.base + self.i
        c = self.peek()
        if c in (ord("{"), ord("[")):
            if depth + 1 > self.max_depth:
                self.fail("nesting deeper than %d" % self.max_depth)
            if c == ord("{"):
                return Node(self.obj(depth + 1, at), at)
            return Node(self.arr(depth + 1), at)
        if c == ord('"'):
            return Node(self.string(), at)
        for word, val in _WORDS:
            if self.s.startswith(word, self.i):
                self.i += len(word)
                return Node(val, at)
        m = _NUMBER.match(self.s, self.i)
        if m:
            self.i = m.end()
            text = m.group().decode("ascii")
            return Node(Num(text, m.group(1) is None and m.group(2) is None), at)
        self.fail("expected a value" if c >= 0 else "unexpected end")

    def obj(self, depth: int, at: int) -> Obj:
        self.i += 1  # {
        pairs: List[Tuple[str, Node, int]] = []
        self.ws()
        if self.peek() == ord("}"):
            self.i += 1
            return Obj(pairs, at)
        while True:
            self.ws()
            if self.peek() != ord('"'):
                self.fail("expected a key")
            key_at = self.base + self.i
            key = self.string()
            self.ws()
            if self.peek() != ord(":"):
                self.fail("expected ':'")
            self.i += 1
            pairs.append((key, self.value(depth), key_at))
            self.ws()
            c = self.peek()
            if c == ord("}"):
                self.i += 1
                return Obj(pairs, at)
            if c != ord(","):
                self.fail("expected ',' or '}'")
            self.i += 1

    def arr(self, depth: int) -> List[Node]:
        self.i += 1  # [
        items: List[Node] = []
        self.ws()
        if self.peek() == ord("]"):
            self.i += 1
            return items
        while True:
            items.append(self.value(depth))
            self.ws()
            c = self.peek()
            if c == ord("]"):
                self.i += 1
                return items
            if c != ord(","):
                self.fail("expected ',' or ']'")
            self.i += 1

    def hex4(self) -> int:
        if not _HEX4.match(self.s, self.i):
            self.fail("\\u needs four hex digits")
        self.i += 4
        return int(self.s[self.i - 4:self.i], 16)

    def string(self) -> str:
        s = self.s
        self.i += 1  # opening quote
        out = []
        while True:
            m = _PLAIN.match(s, self.i)
            if m:
                # The whole payload is valid UTF-8 and the run stops only at
                # ASCII bytes, so it never splits a character.
                out.append(m.group().decode("utf-8"))
                self.i = m.end()
            c = self.peek()
            if c == ord('"'):
                self.i += 1
                return "".join(out)
            if c < 0:
                self.fail("unterminated string")
            if c != ord("\\"):
                self.fail("raw control character U+%04X in a string" % c)
            e = s[self.i + 1] if self.i + 1 < len(s) else -1
            self.i += 2
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e == ord("u"):
                cp = self.hex4()
                if 0xD800 <= cp <= 0xDBFF:
                    if s[self.i:self.i + 2] != b"\\u":
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


def parse(payload: bytes, base: int, max_depth: int) -> Obj:
    """Parses a payload that must be one UTF-8 JSON object.

    ``base`` is the payload's offset in the frame (12); ``max_depth`` bounds
    container nesting, the top-level object counting as 1.
    """
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise E.InvalidUtf8Error("json", base + e.start, "the payload is not UTF-8")
    return _Parser(payload, base, max_depth).document()


def message_type(obj: Obj) -> Tuple[str, int]:
    """The object's ``type`` and its offset (missing, twice or not a string: an error)."""
    found = [(node, key_at) for key, node, key_at in obj.pairs if key == "type"]
    if not found:
        raise E.MissingFieldError("type", obj.at, "the object has no type")
    if len(found) > 1:
        raise E.DuplicateFieldError("type", found[1][1], "type given twice")
    node = found[0][0]
    if not isinstance(node.value, str):
        raise E.WrongTypeError("type", node.at, "expected a string, got %s" % type_name(node.value))
    return node.value, node.at


def fields(obj: Obj, names: FrozenSet[str], message: str) -> Dict[str, Node]:
    """The known fields of a message object; a known key given twice is an error.

    Unknown keys are ignored (and may repeat).
    """
    found: Dict[str, Node] = {}
    for key, node, key_at in obj.pairs:
        if key in names:
            if key in found:
                raise E.DuplicateFieldError("%s.%s" % (message, key), key_at, "given twice")
            found[key] = node
    return found


def required(found: Dict[str, Node], name: str, field: str, obj: Obj) -> Node:
    """A ``required`` field: present and not null."""
    node = found.get(name)
    if node is None:
        raise E.MissingFieldError(field, obj.at, "required")
    if node.value is None:
        raise E.WrongTypeError(field, node.at, "null for a required field")
    return node


def optional(found: Dict[str, Node], name: str) -> Optional[Node]:
    """An ``omit`` or ``null`` field: missing and null both mean absent."""
    node = found.get(name)
    if node is None or node.value is None:
        return None
    return node


def present(found: Dict[str, Node], name: str, field: str, obj: Obj) -> Optional[Node]:
    """A ``nullable`` field: the key must be there; null means absent."""
    node = found.get(name)
    if node is None:
        raise E.MissingFieldError(field, obj.at, "required (it may be null)")
    return None if node.value is None else node


def type_name(v: object) -> str:
    """How an error message names the JSON type of a value."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, Num):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


def read_string(node: Node, field: str) -> str:
    if not isinstance(node.value, str):
        raise E.WrongTypeError(field, node.at, "expected a string, got %s" % type_name(node.value))
    return node.value


def read_uint(node: Node, field: str, bits: int) -> int:
    v = node.value
    if not isinstance(v, Num):
        raise E.WrongTypeError(field, node.at, "expected an integer, got %s" % type_name(v))
    if not v.is_int:
        raise E.WrongTypeError(field, node.at, "%s has a fraction or exponent" % v.text)
    text = v.text
    if text.startswith("-"):
        if text == "-0":  # the integer zero in JSON
            return 0
        raise E.OutOfRangeError(field, node.at, "%s is negative" % text)
    # No leading zeros in JSON, so more than 20 digits is above 2^64-1; this
    # also keeps huge literals away from int() (CPython limits int(str)).
    if len(text) > 20 or int(text) >= 1 << bits:
        raise E.OutOfRangeError(field, node.at, "%s does not fit u%d" % (text[:40], bits))
    return int(text)


def read_bytes(node: Node, field: str) -> bytes:
    v = node.value
    if not isinstance(v, str):
        raise E.WrongTypeError(field, node.at, "expected a base64 string, got %s" % type_name(v))
    try:
        raw = base64.b64decode(v.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise E.InvalidBase64Error(field, node.at, "not standard padded base64") from None
    if base64.b64encode(raw).decode("ascii") != v:  # non-zero trailing bits
        raise E.InvalidBase64Error(field, node.at, "not canonical base64")
    return raw


def read_bytes_list(node: Node, field: str) -> List[bytes]:
    if not isinstance(node.value, list):
        raise E.WrongTypeError(field, node.at, "expected an array, got %s" % type_name(node.value))
    return [read_bytes(item, field) for item in node.value]


def read_enum_word(node: Node, field: str, enum_name: str, words: Dict[str, object]) -> object:
    """A unit enum value written as a JSON string."""
    v = node.value
    if not isinstance(v, str):
        raise E.WrongTypeError(field, node.at, "expected a string, got %s" % type_name(v))
    if v not in words:
        raise E.InvalidEnumValueError(field, node.at, "%r is not a %s" % (v[:64], enum_name))
    return words[v]


# ------------------------------------------------------------------ writers
# Each writer checks its value first and raises EncodeError: None for a
# field that must be written is missing_field, a value of the wrong Python
# type wrong_type, an integer that does not fit out_of_range.
def missing(v: object, field: str) -> None:
    if v is None:
        raise E.EncodeError(E.ErrorClass.MISSING_FIELD, field, "required")


def w_string(v: object, field: str) -> str:
    """A JSON string exactly as felix-wire writers write it: only ``"``, ``\\``
    and control characters escaped (``\\b \\f \\n \\r \\t``, else lowercase
    ``\\u00xx``); ``/``, DEL and non-ASCII raw."""
    missing(v, field)
    if not isinstance(v, str):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected a str")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise E.EncodeError(E.ErrorClass.INVALID_UTF8, field, "a lone surrogate") from None
    out = ['"']
    for ch in v:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch >= " ":
            out.append(ch)
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
        else:
            out.append("\\u%04x" % ord(ch))
    out.append('"')
    return "".join(out)


def check_uint(v: object, field: str, bits: int) -> int:
    missing(v, field)
    if not isinstance(v, int) or isinstance(v, bool):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected an int")
    if not 0 <= v < 1 << bits:
        raise E.EncodeError(E.ErrorClass.OUT_OF_RANGE, field, "%d does not fit u%d" % (v, bits))
    return v


def w_uint(v: object, field: str, bits: int) -> str:
    return str(check_uint(v, field, bits))


def check_bytes(v: object, field: str) -> bytes:
    missing(v, field)
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected bytes")
    return bytes(v)


def w_bytes(v: object, field: str) -> str:
    return '"%s"' % base64.b64encode(check_bytes(v, field)).decode("ascii")


def w_bytes_list(v: object, field: str) -> str:
    missing(v, field)
    if not isinstance(v, (list, tuple)):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected a list of bytes")
    return "[%s]" % ",".join(w_bytes(item, field) for item in v)
