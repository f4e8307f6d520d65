"""The bytes of a windowed key: the inner key's bytes, then the window's start and end, each a
big-endian signed 64-bit integer (16 bytes after the key).

A sink writing windowed keys puts each record in the partition of its inner key
(`partition_key`), so a windowed result lands where a record of the same key would.

>>> from processor.serdes import StringSerde
>>> serde = WindowedSerde(StringSerde())
>>> data = serde.serialize(Windowed("alice", 60_000, 120_000))
>>> data[:5], len(data)
(b'alice', 21)
>>> serde.deserialize(data)
Windowed(key='alice', start_ms=60000, end_ms=120000)
"""

from __future__ import annotations

import struct
from typing import Any, Generic, TypeVar

from processor.serdes import Serde
from processor.windows.spec import Windowed

K = TypeVar("K")

_BOUNDS = struct.Struct(">qq")


class WindowedSerde(Generic[K]):
    """Serializes `Windowed(key, start_ms, end_ms)` with `inner` for the key."""

    def __init__(self, inner: Serde[K]) -> None:
        self.inner = inner
        self.name = f"windowed({inner.name})"

    def serialize(self, value: Windowed[K] | None) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, Windowed):
            raise TypeError(
                f"expected a Windowed key, got {type(value).__name__}; a windowed table's keys "
                "are Windowed(key, start_ms, end_ms) — map them, or give to() a key_serde"
            )
        key = self.inner.serialize(value.key)
        if key is None:
            raise ValueError("a windowed key's inner key cannot be None")
        return key + _BOUNDS.pack(value.start_ms, value.end_ms)

    def deserialize(self, data: bytes | None) -> Windowed[K] | None:
        if data is None:
            return None
        if len(data) < _BOUNDS.size:
            raise ValueError(
                f"a windowed key is the inner key and 16 bytes of window bounds; got {len(data)}"
                " bytes"
            )
        start, end = _BOUNDS.unpack_from(data, len(data) - _BOUNDS.size)
        key: Any = self.inner.deserialize(data[: -_BOUNDS.size])
        return Windowed(key, start, end)

    @staticmethod
    def partition_key(data: bytes) -> bytes:
        """The inner key's bytes of a serialized windowed key: what it is partitioned by."""
        return data[: -_BOUNDS.size]

    def __repr__(self) -> str:
        return f"WindowedSerde({self.inner!r})"
