"""The stores of a stream-stream join: each side's records (a buffer), and the records of a
left or outer join that have not matched yet. Byte-level: the join operator
(`processor.topology.stream_stream_join`) serializes keys and values.

A buffer keeps every record, duplicates included (several records of one key at one timestamp
are told apart by a sequence number the store counts, kept in the store and its changelog). One
column family and one changelog hold (integers big-endian, 8 bytes; `len` is the key's length in
4 bytes):

- record: `b"D" + len + key + ts + seq` -> value. One key's records in a time range are one range
  scan, in timestamp order, then arrival order.
- by time: `b"E" + ts + seq` -> `len + key`. Expiry is a range scan from the oldest.
- unmatched (the join's unmatched store): `b"U" + ts + side + len + key + seq` -> value, in the
  order unmatched records are emitted: timestamp, then side (`LEFT` first), key bytes, arrival.
- meta: `b"Mseq"` -> the next sequence number.

Every entry, the time entries included, goes through the cache to the changelog, so a restore is
a plain replay: a record's entries are written and deleted together, in the same commit.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from processor.errors import ChangelogRecordTooLargeError
from processor.serdes import Serde
from processor.state.cache import StoreCache
from processor.state.typed import NO_LIMIT

RECORD = b"D"
BY_TIME = b"E"
UNMATCHED = b"U"
SEQUENCE = b"Mseq"
LEFT = b"L"
RIGHT = b"R"
U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
_AFTER_BY_TIME = b"F"


def _ts(timestamp: int) -> bytes:
    """A timestamp as it sorts (timestamps below 0 never reach a join: the source refuses them;
    a window bound below 0 is clamped to 0)."""
    return U64.pack(max(timestamp, 0))


class JoinBuffer:
    """One store of a stream-stream join over `cache`; `key_serde` and `value_serde` are those of
    the entries' keys and values (the unmatched store mixes both sides: its values are bytes)."""

    def __init__(self, cache: StoreCache, key_serde: Serde[Any], value_serde: Serde[Any]) -> None:
        self.name = cache.store
        self.cache = cache
        self.key_serde = key_serde
        self.value_serde = value_serde
        self._next_seq: int | None = None
        self._changelog = ""
        self._max_record_bytes = NO_LIMIT

    def limit_changelog(self, changelog: str, max_record_bytes: int) -> None:
        """Refuse (`ChangelogRecordTooLargeError`) a record whose entry would not fit one record
        of topic `changelog`."""
        self._changelog = changelog
        self._max_record_bytes = max_record_bytes

    def _check_size(self, key: bytes, value: bytes) -> None:
        key_size = len(key) + 21
        if key_size + len(value) > self._max_record_bytes:
            raise ChangelogRecordTooLargeError(
                self.name, self._changelog, key_size, len(value), self._max_record_bytes
            )

    # -- a side's records ------------------------------------------------------------------

    def put(self, key: bytes, timestamp: int, value: bytes) -> int:
        """Keep a record; returns its sequence number (what tells duplicates apart)."""
        self._check_size(key, value)
        seq = self._next_seq
        if seq is None:
            stored = self.cache.get(SEQUENCE)
            seq = U64.unpack(stored)[0] if stored else 0
        self._next_seq = seq + 1
        cache = self.cache
        cache.put(SEQUENCE, U64.pack(seq + 1))
        at = _ts(timestamp) + U64.pack(seq)
        sized_key = U32.pack(len(key)) + key
        cache.put(RECORD + sized_key + at, value)
        cache.put(BY_TIME + at, sized_key)
        return seq

    def fetch(self, key: bytes, low: int, high: int) -> Iterator[tuple[int, int, bytes]]:
        """The records of `key` with `low <= ts <= high` as (ts, seq, value), oldest first."""
        if high < 0 or high < low:
            return
        prefix = RECORD + U32.pack(len(key)) + key
        start = len(prefix)
        for stored, value in self.cache.range(prefix + _ts(low), prefix + U64.pack(high + 1)):
            timestamp, seq = struct.unpack_from(">QQ", stored, start)
            yield timestamp, seq, value

    def expire(self, before: int) -> int:
        """Remove the records with a timestamp below `before`; returns how many."""
        if before <= 0:
            return 0
        cache = self.cache
        removed = 0
        for stored, sized_key in list(self.cache.range(BY_TIME, BY_TIME + U64.pack(before))):
            cache.delete(stored)
            cache.delete(RECORD + sized_key + stored[1:])
            removed += 1
        return removed

    def first_time(self) -> int | None:
        """The timestamp of the oldest record kept."""
        for stored, _ in self.cache.range(BY_TIME, _AFTER_BY_TIME):
            return int(U64.unpack_from(stored, 1)[0])
        return None

    def records(self) -> Iterator[tuple[Any, int, Any]]:
        """Every record as (key, ts, value), typed, oldest first: for tests and tools."""
        for stored, sized_key in self.cache.range(BY_TIME, _AFTER_BY_TIME):
            key = sized_key[4:]
            data = self.cache.get(RECORD + sized_key + stored[1:])
            if data is not None:
                timestamp = U64.unpack_from(stored, 1)[0]
                yield self.key_serde.deserialize(key), timestamp, self.value_serde.deserialize(data)

    # -- the unmatched records of a left or outer join -------------------------------------

    def put_unmatched(
        self, side: bytes, key: bytes, timestamp: int, seq: int, value: bytes
    ) -> None:
        self._check_size(key, value)
        self.cache.put(_unmatched_key(side, key, timestamp, seq), value)

    def matched(self, side: bytes, key: bytes, timestamp: int, seq: int) -> None:
        """The record is no longer unmatched (read first: most matched records never were)."""
        stored = _unmatched_key(side, key, timestamp, seq)
        if self.cache.get(stored) is not None:
            self.cache.delete(stored)

    def take_unmatched(self, before: int) -> Iterator[tuple[bytes, bytes, int, bytes]]:
        """Remove and yield the unmatched records with a timestamp below `before`, as (side,
        key, ts, value), in emit order. Each is deleted before it is yielded."""
        if before <= 0:
            return
        cache = self.cache
        for stored, value in list(cache.range(UNMATCHED, UNMATCHED + U64.pack(before))):
            timestamp = U64.unpack_from(stored, 1)[0]
            (length,) = U32.unpack_from(stored, 10)
            cache.delete(stored)
            yield stored[9:10], stored[14 : 14 + length], timestamp, value

    def first_unmatched_time(self) -> int | None:
        for stored, _ in self.cache.range(UNMATCHED, b"V"):
            return int(U64.unpack_from(stored, 1)[0])
        return None


def _unmatched_key(side: bytes, key: bytes, timestamp: int, seq: int) -> bytes:
    return UNMATCHED + _ts(timestamp) + side + U32.pack(len(key)) + key + U64.pack(seq)
