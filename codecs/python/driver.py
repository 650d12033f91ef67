#!/usr/bin/env python3
"""The generated ``felix_wire`` package as a conformance testee.

Speaks the codec driver protocol (version 1, docs/conformance.md) on
stdin/stdout: one JSON request per line, one JSON answer per line, in
order. Everything the protocol asks is one call into the package:
``decode_frame`` + ``to_neutral`` for ``decode``, ``from_neutral`` +
``encode`` for ``encode``.

    cargo run -p felix-conformance -- codec --cmd "python3 codecs/python/driver.py"
"""

import json
import os
import re
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import felix_wire  # noqa: E402

NAME = "felix-wire-py (generated)"
PROTOCOL = "felix-wire-codec-driver"
PROTOCOL_VERSION = 1
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


class BadRequest(Exception):
    """A request this program cannot make sense of (a runner problem, not a vector's)."""


def _frame_bytes(req):
    frame = req.get("frame")
    if not isinstance(frame, str):
        raise BadRequest('decode needs a string "frame"')
    digits = "".join(frame.split())
    if not _HEX.fullmatch(digits):
        raise BadRequest('"frame" is not hex')
    return bytes.fromhex(digits)


def handle(req):
    """Answers one request (a dict) with one response (a dict)."""
    if not isinstance(req, dict):
        return {"id": None, "result": "unsupported", "message": "a request must be a JSON object"}
    op, rid = req.get("op"), req.get("id")
    try:
        if op == "hello":
            if req.get("protocol") != PROTOCOL or req.get("version") != PROTOCOL_VERSION:
                return {"id": rid, "result": "unsupported",
                        "message": "this testee speaks %s version %d" % (PROTOCOL, PROTOCOL_VERSION)}
            return {"id": rid, "result": "ok", "name": NAME, "version": felix_wire.__version__}
        if op == "bye":
            return {"id": rid, "result": "ok"}
        if op == "decode":
            data = _frame_bytes(req)
            cap = req.get("maxFrameBytes", felix_wire.DEFAULT_MAX_FRAME_BYTES)
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
                raise BadRequest('"maxFrameBytes" must be a non-negative integer')
            frame, _ = felix_wire.decode_frame(data, cap)
            return {"id": rid, "result": "ok", "decoded": felix_wire.to_neutral(frame)}
        if op == "encode":
            if "decoded" not in req:
                raise BadRequest('encode needs "decoded"')
            frame = felix_wire.from_neutral(req["decoded"])
            return {"id": rid, "result": "ok", "frame": felix_wire.encode(frame).hex()}
        return {"id": rid, "result": "unsupported", "message": "unknown op %r" % (op,)}
    except (felix_wire.DecodeError, felix_wire.EncodeError) as e:
        return {"id": rid, "result": "error", "errorClass": e.error_class.value, "message": str(e)}
    except BadRequest as e:
        return {"id": rid, "result": "unsupported", "message": "bad request: %s" % e}
    except Exception as e:  # a bug: say so (the case fails) and keep serving
        traceback.print_exc(file=sys.stderr)
        return {"id": rid, "result": "error", "errorClass": "internal_error",
                "message": "%s: %s" % (type(e).__name__, e)}


def main():
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            req = json.loads(line.decode("utf-8"))
        except ValueError as e:
            req = None
            resp = {"id": None, "result": "unsupported", "message": "unreadable request: %s" % e}
        else:
            resp = handle(req)
        # ASCII-only compact JSON: independent of the locale's encoding.
        sys.stdout.write(json.dumps(resp, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        if isinstance(req, dict) and req.get("op") == "bye":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
