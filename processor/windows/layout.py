"""The bytes of a window store (`processor.state.window_store` holds the store): how window,
index, meta and record entries are laid out and read back. Pure functions, shared by the store,
the operators and the query API."""

from __future__ import annotations

import struct
from collections.abc import Sequence

# One change to a store: a put (value is bytes) or a delete (value is None).
Change = tuple[bytes, bytes | None]

WINDOW = b"W"
INDEX = b"I"
META = b"M"
RECORD = b"R"

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
BOUNDS = struct.Struct(">QQ")
pack_u64 = U64.pack


def key_prefix(key: bytes) -> bytes:
    """The bytes every window entry of `key` starts with."""
    return WINDOW + U32.pack(len(key)) + key


def window_key(key: bytes, start: int, end: int) -> bytes:
    return WINDOW + U32.pack(len(key)) + key + BOUNDS.pack(start, end)


def index_key(end: int, key: bytes, start: int, kind: bytes = WINDOW) -> bytes:
    return INDEX + BOUNDS.pack(end, start) + kind + key + pack_u64(end)


def record_index_key(key: bytes, timestamp: int) -> bytes:
    """The index entry of the records of `key` at `timestamp`. Indexed as ending a millisecond
    after it: a record is needed until the window starting right after it (its right window)
    closes."""
    return index_key(timestamp + 1, key, timestamp, RECORD)


def index_changes(changes: Sequence[Change]) -> list[Change]:
    """The index entries that the window and record entries among `changes` imply (a put
    indexes, a delete unindexes), for a restore to write with them."""
    derived: list[Change] = []
    for stored, value in changes:
        head = stored[:1]
        if head == WINDOW:
            key, start, end = parse_window_key(stored)
            derived.append((index_key(end, key, start), None if value is None else b""))
        elif head == RECORD:
            (length,) = U32.unpack_from(stored, 1)
            (timestamp,) = U64.unpack_from(stored, 5 + length)
            entry = record_index_key(stored[5 : 5 + length], timestamp)
            derived.append((entry, None if value is None else b""))
    return derived


def parse_window_key(data: bytes) -> tuple[bytes, int, int]:
    """(key, start, end) of a window entry's store key."""
    (length,) = U32.unpack_from(data, 1)
    start, end = BOUNDS.unpack_from(data, 5 + length)
    return data[5 : 5 + length], start, end


def parse_index_key(data: bytes) -> tuple[int, bytes, bytes, int, int]:
    """(end, kind, key, start, end) of an index entry (a kept record's: its timestamp twice)."""
    indexed, start = BOUNDS.unpack_from(data, 1)
    (end,) = U64.unpack_from(data, len(data) - 8)
    return indexed, data[17:18], data[18:-8], start, end


def index_bound(end: int) -> bytes:
    """The smallest index key with `end` (index entries below it end earlier)."""
    return INDEX + pack_u64(max(0, end))


def successor(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])
