"""felix-wire v1 codec for Python 3.9+ (standard library only).

Generated from ``spec/felix-wire.yaml`` by ``felix-codegen``, like the Rust
codec, and checked against the same test vectors.

>>> import felix_wire as fw
>>> frame = fw.Publish(tenant_id="t1", namespace="default", stream="orders",
...                    payload=b"hello", ack=fw.AckMode.NONE)
>>> data = fw.encode(frame)
>>> data[:4]
b'FLX1'
>>> fw.decode_frame(data) == (frame, len(data))
True

Layout
------

- ``generated/`` (``@generated``, never edited by hand): constants and flag
  bits, the error classes (``DecodeError`` and one subclass per class),
  enums, one dataclass per JSON message (``generated/messages/``) and per
  binary layout (``generated/layouts/``), the frame dispatch and the
  neutral form.
- ``codec.py``: the header checks, ``decode_frame``, the streaming
  ``FrameDecoder`` and ``encode``.
- ``_json.py``: a strict JSON parser over bytes and byte-exact writers.
- ``_binary.py``: the bounds-checked reader and writers of binary layouts.
- ``_neutral.py``: readers of the neutral form the vectors use.
"""

from .codec import FrameDecoder, Header, decode_frame, encode, parse_header
from .generated import *  # noqa: F401,F403
from .generated import __all__ as _generated_all

__version__ = "0.1.0"

__all__ = ["FrameDecoder", "Header", "decode_frame", "encode", "parse_header"] + list(_generated_all)
