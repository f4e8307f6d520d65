"""Serdes turn keys and values into bytes and back.

A serde is any object with `serialize(value) -> bytes | None` and `deserialize(data) -> value`.
`None` passes through both ways untouched: a null key or a tombstone value stays null.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class Serde(Protocol[T]):
    """Converts values of type T to bytes and back."""

    name: str

    def serialize(self, value: T | None) -> bytes | None: ...

    def deserialize(self, data: bytes | None) -> T | None: ...


class _NullPassing(Generic[T]):
    """Base for serdes that map None to None, so subclasses only handle real values."""

    name = "abstract"

    def serialize(self, value: T | None) -> bytes | None:
        return None if value is None else self._to_bytes(value)

    def deserialize(self, data: bytes | None) -> T | None:
        return None if data is None else self._from_bytes(data)

    def _to_bytes(self, value: T) -> bytes:
        raise NotImplementedError

    def _from_bytes(self, data: bytes) -> T:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BytesSerde(_NullPassing[bytes]):
    """Bytes as they are."""

    name = "bytes"

    def _to_bytes(self, value: bytes) -> bytes:
        # bytes(5) would be five zero bytes and bytes([1, 2]) b"\x01\x02": accept bytes-likes only.
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        return bytes(value)

    def _from_bytes(self, data: bytes) -> bytes:
        return data


class StringSerde(_NullPassing[str]):
    """UTF-8 text."""

    name = "string"

    # serialize/deserialize are written out rather than inherited: one Python call instead of
    # two, and a counted record passes through several serdes.
    def serialize(self, value: str | None) -> bytes | None:
        return None if value is None else value.encode("utf-8")

    def deserialize(self, data: bytes | None) -> str | None:
        return None if data is None else data.decode("utf-8")


_INT = struct.Struct(">q")  # Kafka's LongSerializer layout
_pack_int, _unpack_int = _INT.pack, _INT.unpack


class IntSerde(_NullPassing[int]):
    """A signed 64-bit big-endian integer, the layout of Kafka's LongSerializer."""

    name = "int"

    # Written out rather than inherited, as in StringSerde.
    def serialize(self, value: int | None) -> bytes | None:
        return None if value is None else _pack_int(value)

    def deserialize(self, data: bytes | None) -> int | None:
        if data is None:
            return None
        if len(data) != _INT.size:
            raise ValueError(f"an int is {_INT.size} bytes, got {len(data)}")
        value: int = _unpack_int(data)[0]
        return value


class JsonSerde(_NullPassing[Any]):
    """JSON text in UTF-8, compact."""

    name = "json"

    def _to_bytes(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
            "utf-8"
        )

    def _from_bytes(self, data: bytes) -> Any:
        return json.loads(data)
