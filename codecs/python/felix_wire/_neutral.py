"""Readers of the neutral form the test vectors use (``{"flags", "kind",
"fields"}``, bytes as lowercase hex, absent as null).

The generated ``from_neutral`` methods call these; a value that does not fit
raises ``EncodeError`` with the nearest spec error class (the conformance
driver answers it as an ``error``).
"""

import re
from typing import Any, Dict, List, Optional

from .generated import errors as E

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def get(fields: Dict[str, Any], name: str) -> Optional[Any]:
    """A field that is present and not null, else None."""
    return fields.get(name)


def required(fields: Dict[str, Any], name: str, field: str) -> Any:
    v = fields.get(name)
    if v is None:
        raise E.EncodeError(E.ErrorClass.MISSING_FIELD, field, "required")
    return v


def string(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected a string")
    return v


def uint(v: Any, field: str, bits: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected an integer")
    if not 0 <= v < 1 << bits:
        raise E.EncodeError(E.ErrorClass.OUT_OF_RANGE, field, "%d does not fit u%d" % (v, bits))
    return v


def from_hex(v: Any, field: str) -> bytes:
    if not isinstance(v, str) or not _HEX.fullmatch(v):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected bytes as hex")
    return bytes.fromhex(v)


def from_hex_list(v: Any, field: str) -> List[bytes]:
    if not isinstance(v, list):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected an array of hex strings")
    return [from_hex(item, field) for item in v]


def word(v: Any, field: str, enum_name: str, words: Dict[str, Any]) -> Any:
    """A unit enum value by its name."""
    if not isinstance(v, str):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected a string")
    if v not in words:
        raise E.EncodeError(E.ErrorClass.INVALID_ENUM_VALUE, field, "%r is not a %s" % (v, enum_name))
    return words[v]


def list_(v: Any, field: str) -> List[Any]:
    if not isinstance(v, list):
        raise E.EncodeError(E.ErrorClass.WRONG_TYPE, field, "expected an array")
    return v
