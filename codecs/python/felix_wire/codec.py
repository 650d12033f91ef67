"""Frames from bytes and back: the header checks, one-shot decoding, the
streaming ``FrameDecoder`` and ``encode``.

Like the Rust codec, decoding is two-phase: the 12-byte header is checked
first (magic, version, flags, then the length against the receiver's cap),
which says how long the frame is; only then is the payload buffered and
parsed. ``IncompleteError`` means "need more bytes"; every other
``DecodeError`` is final for the stream.
"""

from typing import List, NamedTuple, Optional, Tuple

from .generated import errors as E
from .generated.constants import DEFAULT_MAX_FRAME_BYTES, HEADER_LEN, KNOWN_FLAGS, MAGIC, VERSION
from .generated.frame import LAYOUT_FOR_FLAGS, Frame, decode_payload

_MAX_LENGTH = 0xFFFFFFFF


class Header(NamedTuple):
    """A checked frame header."""

    flags: int
    length: int


def parse_header(data: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Header:
    """Checks the header at the start of ``data`` in the spec's order: whole
    header present, magic, version, unknown flag bits, flag combination,
    then ``length`` against ``max_frame_bytes``. Payload bytes are not
    looked at, so a header announcing too much is ``FrameTooLargeError``,
    never ``IncompleteError``."""
    if len(data) < HEADER_LEN:
        raise E.IncompleteError(None, len(data), "%d of %d header bytes" % (len(data), HEADER_LEN))
    magic = int.from_bytes(data[0:4], "big")
    if magic != MAGIC:
        raise E.BadMagicError("header.magic", 0, "expected 0x%08x, found 0x%08x" % (MAGIC, magic))
    version = int.from_bytes(data[4:6], "big")
    if version != VERSION:
        raise E.BadVersionError("header.version", 4, "expected %d, found %d" % (VERSION, version))
    flags = int.from_bytes(data[6:8], "big")
    if flags & ~KNOWN_FLAGS:
        raise E.UnknownFlagsError(
            "header.flags", 6, "unknown flag bits 0x%04x in 0x%04x" % (flags & ~KNOWN_FLAGS, flags))
    if flags not in LAYOUT_FOR_FLAGS:
        raise E.InvalidFlagCombinationError("header.flags", 6, "0x%04x is not a valid combination" % flags)
    length = int.from_bytes(data[8:12], "big")
    if length > max_frame_bytes:
        raise E.FrameTooLargeError(
            "header.length", 8, "%d bytes exceeds the frame cap of %d" % (length, max_frame_bytes))
    return Header(flags, length)


def decode_frame(data: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Tuple[Frame, int]:
    """Decodes the frame at the start of ``data``.

    Returns the frame and how many bytes it took; bytes after it (the next
    frame on a stream) are not looked at. Raises ``IncompleteError`` when
    ``data`` ends before the frame does, another ``DecodeError`` subclass
    when the bytes are invalid.
    """
    data = bytes(data)
    header = parse_header(data, max_frame_bytes)
    end = HEADER_LEN + header.length
    if len(data) < end:
        raise E.IncompleteError(None, len(data), "%d of %d frame bytes" % (len(data), end))
    return decode_payload(header.flags, data[HEADER_LEN:end]), end


class FrameDecoder:
    """Splits a byte stream into frames.

    Feed it bytes as they arrive, in pieces of any size; ``feed`` returns
    the frames completed so far. The header is checked as soon as its 12
    bytes are in, before a single payload byte is buffered, so a peer
    cannot make the decoder hold more than the cap. An error is final: the
    framing can no longer be trusted, and later calls raise it again.

    >>> dec = FrameDecoder()
    >>> dec.feed(b"FLX1\\x00\\x01\\x00\\x00")
    []
    >>> dec.feed(b'\\x00\\x00\\x00\\x0d{"type":"ok"}')
    [OkMessage()]
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self.max_frame_bytes = max_frame_bytes
        """The payload cap for frames whose header is still to come (a broker
        may start a stream small and raise it after auth)."""
        self._buf = bytearray()
        self._header: Optional[Header] = None
        self._error: Optional[E.DecodeError] = None
        self.stream_offset = 0
        """Stream bytes taken by the frames decoded so far: add it to an
        error's frame offset to find the byte in the stream."""

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress."""
        return len(self._buf)

    def feed(self, data: bytes) -> List[Frame]:
        """Takes the next bytes of the stream; returns every frame they complete."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(memoryview(bytes(data)))
        except E.DecodeError as e:
            self._error = e
            raise

    def _feed(self, view: memoryview) -> List[Frame]:
        frames: List[Frame] = []
        pos = 0
        while pos < len(view):
            if self._header is None:
                take = view[pos:pos + HEADER_LEN - len(self._buf)]
                self._buf += take
                pos += len(take)
                if len(self._buf) < HEADER_LEN:
                    break
                self._header = parse_header(bytes(self._buf), self.max_frame_bytes)
                self._buf.clear()
            take = view[pos:pos + self._header.length - len(self._buf)]
            self._buf += take
            pos += len(take)
            if len(self._buf) == self._header.length:
                frames.append(self._finish())
        return frames

    def _finish(self) -> Frame:
        header, payload = self._header, bytes(self._buf)
        self._header = None
        self._buf = bytearray()
        frame = decode_payload(header.flags, payload)
        self.stream_offset += HEADER_LEN + header.length
        return frame

    def at_boundary(self) -> bool:
        """True when no partial frame is buffered (a stream may end here)."""
        return self._header is None and not self._buf


def encode(frame: Frame) -> bytes:
    """Header plus payload for ``frame``. Every field is checked first: a
    value that does not fit its wire form raises ``EncodeError``."""
    payload = frame._encode_payload()
    if len(payload) > _MAX_LENGTH:
        raise E.EncodeError(E.ErrorClass.FRAME_TOO_LARGE, None, "%d payload bytes" % len(payload))
    return (MAGIC.to_bytes(4, "big") + VERSION.to_bytes(2, "big") + frame.flags().to_bytes(2, "big")
            + len(payload).to_bytes(4, "big") + payload)
