"""Checking that a batch of a global table's records decodes, faster than decoding each.

A global table is restored at hundreds of thousands of records a second, and decoding each
value with its serde (`json.loads`: about 2 µs) would take most of that time. For the serdes
the project ships, `batch_check(serde)` gives a check of a whole batch that is exact (true only
when every value decodes on its own) and does a small part of the work per value; when it says
no, the caller decodes record by record to find the culprits. Other serdes get None: each value
is decoded with the serde.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable, Sequence
from typing import Any

from processor.serdes import BytesSerde, IntSerde, JsonSerde, StringSerde

__all__ = ["BatchCheck", "batch_check"]

BatchCheck = Callable[[Sequence[bytes]], bool]

_SEPARATOR = b"\n"
# The C scanner json.loads itself uses, without the per-call work around it (type checks, the
# encoding's detection, the whitespace around the document).
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed types the class as its own argument
)


def batch_check(serde: Any) -> BatchCheck | None:
    """An exact check of many values for `serde` (None: decode each with the serde)."""
    kind = type(serde)
    if kind is BytesSerde:
        return _anything
    if kind is StringSerde:
        return _utf8
    if kind is IntSerde:
        return _eight_bytes
    if kind is JsonSerde:
        return _json
    return None


def _anything(values: Sequence[bytes]) -> bool:
    return True


def _eight_bytes(values: Sequence[bytes]) -> bool:
    return all(len(v) == 8 for v in values)


def _utf8(values: Sequence[bytes]) -> bool:
    # A newline cannot continue a multi-byte sequence, nor be one's start: the joined text is
    # valid UTF-8 exactly when every value is.
    try:
        _SEPARATOR.join(values).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json(values: Sequence[bytes]) -> bool:
    """Every value one JSON document, parsed from its first character to its last (ASCII
    only, so that positions in the text are byte positions: anything else is checked value by
    value). A value json.loads accepts with whitespace around it is refused here, and decoded
    by the caller, which accepts it."""
    joined = _SEPARATOR.join(values)
    if not joined.isascii():
        return False
    text = joined.decode("ascii")
    position = 0
    scan = _scan
    try:
        for value in values:
            _, end = scan(text, position)
            if end != position + len(value):
                return False
            position = end + 1
    except (StopIteration, ValueError):  # scan_once signals "no value here" with StopIteration
        return False
    return True
