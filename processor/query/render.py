"""Keys and values between their stored bytes and what the HTTP API shows: JSON for a JSON
serde, text otherwise; a key given as text is serialized with the store's key serde."""

from __future__ import annotations

import json
from typing import Any

from processor.serdes import BytesSerde, IntSerde, JsonSerde, Serde

__all__ = ["KeyFormatError", "format_name", "parse_key", "render"]


class KeyFormatError(ValueError):
    """A key given as text cannot be serialized with the store's key serde."""


def format_name(serde: Serde[Any]) -> str:
    return "json" if isinstance(serde, JsonSerde) else "text"


def parse_key(serde: Serde[Any], text: str) -> bytes:
    """The stored bytes of the key written as `text`: an integer for an int serde, a JSON
    document for a JSON serde, the text itself (UTF-8) otherwise."""
    value: Any
    if isinstance(serde, IntSerde):
        try:
            value = int(text.strip())
        except ValueError:
            raise KeyFormatError(
                f"{text!r} is not an integer (the store's keys are ints)"
            ) from None
        if not -(2**63) <= value < 2**63:
            raise KeyFormatError(f"{text!r} does not fit a 64-bit integer")
    elif isinstance(serde, JsonSerde):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise KeyFormatError(
                f"{text!r} is not JSON (the store's keys are JSON: quote a string key)"
            ) from None
    elif isinstance(serde, BytesSerde):
        try:
            value = text.encode("utf-8", errors="surrogateescape")
        except UnicodeError:
            raise KeyFormatError(f"{text!r} is not text that can be a key") from None
    else:
        value = text
    try:
        data = serde.serialize(value)
    except (TypeError, ValueError, RecursionError) as e:
        raise KeyFormatError(f"{text!r} cannot be serialized as a key: {e}") from None
    if data is None:
        raise KeyFormatError("a key cannot be null")
    return data


def render(serde: Serde[Any], data: bytes) -> Any:
    """What the API shows for stored bytes: the JSON value, or text."""
    try:
        value = serde.deserialize(data)
    except (TypeError, ValueError, UnicodeDecodeError):
        return data.decode("utf-8", errors="backslashreplace")
    if isinstance(serde, JsonSerde):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)
