"""Binary payloads: a bounds-checked big-endian reader and the writers.

The generated layout modules read fields in wire order through ``Reader``
(every read names its field; errors carry the frame offset) and write them
with the ``put_*`` functions, which check each value first so a failed
encode never yields bytes.
"""

from typing import Callable, Optional, Sequence

from ._json import missing
from .generated import errors as E


class Reader:
    """A cursor over one payload; ``base`` is the payload's frame offset (12)."""

    __slots__ = ("data", "pos", "base")

    def __init__(self, data: bytes, base: int):
        self.data = data
        self.pos = 0
        self.base = base

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int, field: str) -> bytes:
        if n > self.remaining():
            raise E.UnexpectedEndError(
                field, self.base + self.pos,
                "needs %d bytes, only %d remain in the payload" % (n, self.remaining()))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self._take(size, field), "big")

    def str16(self, field: str) -> str:
        n = self.uint(2, field)
        at = self.base + self.pos
        raw = self._take(n, field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise E.InvalidUtf8Error(field, at + e.start, "invalid UTF-8") from None

    def bytes32(self, field: str) -> bytes:
        return self._take(self.uint(4, field), field)

    def count(self, size: int, field: str) -> int:
        """A count of length-prefixed items, checked before anything is
        allocated: each item takes at least 4 bytes."""
        at = self.base + self.pos
        n = self.uint(size, field)
        if n > self.remaining() // 4:
            raise E.CountTooLargeError(
                field, at, "count %d exceeds what %d remaining bytes can hold" % (n, self.remaining()))
        return n

    def enum_byte(self, field: str, from_byte: Callable[[int], Optional[object]]) -> object:
        at = self.base + self.pos
        b = self.uint(1, field)
        value = from_byte(b)
        if value is None:
            raise E.InvalidEnumByteError(field, at, "%d is not a defined value" % b)
        return value

    def finish(self, layout: str) -> None:
        if self.remaining():
            raise E.TrailingBytesError(
                layout, self.base + self.pos, "%d trailing bytes after the last field" % self.remaining())


def put_uint(out: bytearray, v: object, size: int, field: str) -> None:
    missing(v, field)
    if not isinstance(v, int) or isinstance(v, bool):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected an int")
    if not 0 <= v < 1 << (8 * size):
        raise E.EncodeError(E.ErrorClass.OUT_OF_RANGE, field, "%d does not fit u%d" % (v, 8 * size))
    out += v.to_bytes(size, "big")


def cut_utf8(b: bytes, limit: int) -> bytes:
    """The longest prefix of UTF-8 ``b`` of at most ``limit`` bytes that ends on
    a character boundary."""
    if len(b) <= limit:
        return b
    end = limit
    while end > 0 and (b[end] & 0xC0) == 0x80:  # b[end] continues a character
        end -= 1
    return b[:end]


def put_str16(out: bytearray, v: object, field: str, max_bytes: Optional[int] = None) -> None:
    """A str16; with ``max_bytes`` the text is cut to that many bytes on a
    character boundary, as writers of that field must."""
    missing(v, field)
    if not isinstance(v, str):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected a str")
    try:
        b = v.encode("utf-8")
    except UnicodeEncodeError:
        raise E.EncodeError(E.ErrorClass.INVALID_UTF8, field, "a lone surrogate") from None
    if max_bytes is not None:
        b = cut_utf8(b, max_bytes)
    if len(b) > 0xFFFF:
        raise E.EncodeError(E.ErrorClass.OUT_OF_RANGE, field, "%d bytes do not fit a str16" % len(b))
    out += len(b).to_bytes(2, "big")
    out += b


def put_bytes32(out: bytearray, v: object, field: str) -> None:
    missing(v, field)
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected bytes")
    if len(v) > 0xFFFFFFFF:
        raise E.EncodeError(E.ErrorClass.OUT_OF_RANGE, field, "%d bytes do not fit a bytes32" % len(v))
    out += len(v).to_bytes(4, "big")
    out += v


def put_count(out: bytearray, items: object, size: int, field: str) -> Sequence[object]:
    """Writes the count of ``items`` (a list) and returns the list."""
    missing(items, field)
    if not isinstance(items, (list, tuple)):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected a list")
    put_uint(out, len(items), size, field)
    return items
