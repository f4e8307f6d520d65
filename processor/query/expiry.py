"""Reads of stores with a TTL (`processor.state.ttl_store`): values are stored after their write
time, and a key whose TTL has passed is never answered, even before its task removed it.

"Now" is the wall clock for a wall-clock TTL; for a stream-time TTL it is the time the task last
wrote into the store's expiry index (its stream time at its last commit; on a standby, the
newest write time it has applied), since a reader has no stream time of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from processor.state.backend import TaskStateBackend
from processor.state.time_index import U64
from processor.state.ttl_store import NOW, written_at
from processor.topology.graph import StoreSpec

Entry = tuple[bytes, bytes]


def _now(spec: StoreSpec, backend: TaskStateBackend) -> int:
    if spec.ttl_clock == "wall":
        return int(time.time() * 1000)
    assert spec.expiry_store is not None
    data = backend.get(spec.expiry_store, NOW)
    return int(U64.unpack_from(data)[0]) if data is not None else -1


def live_values(
    spec: StoreSpec, backend: TaskStateBackend, values: list[bytes | None]
) -> list[bytes | None]:
    """`values` as read from `backend`'s copy of store `spec`, as the store's serde wrote them
    (None for a key that is absent or expired)."""
    if spec.expiry_store is None:
        return values
    now = _now(spec, backend)
    return [
        None if data is None or written_at(data) + spec.ttl_ms <= now else data[8:]
        for data in values
    ]


def live_entries(
    spec: StoreSpec, backend: TaskStateBackend, entries: Iterator[Entry]
) -> Iterator[Entry]:
    """`entries` of `backend`'s copy of store `spec`, without the expired ones."""
    if spec.expiry_store is None:
        yield from entries
        return
    now = _now(spec, backend)
    for key, data in entries:
        if written_at(data) + spec.ttl_ms > now:
            yield key, data[8:]
