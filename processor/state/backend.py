"""Where one task's state lives: every store of the task, plus the changelog offsets that say
how far each store is, written together so that every local checkpoint is atomic.

Keys and values are bytes here; serdes and the write-back cache sit above
(`processor.state.cache`, `processor.state.typed`). Two backends implement this protocol, with one
contract test suite over both: RocksDB (`processor.state.rocksdb`, a database per task, a column
family per store plus one for metadata) and memory (`processor.state.memory`, for the in-memory
test driver).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

# One change to a store: a put (value is bytes) or a delete (value is None).
Change = tuple[bytes, bytes | None]


class TaskStateBackend(Protocol):
    """All stores of one task. Not thread-safe: one thread uses it at a time (the restorer
    while the task restores, the main thread while it runs)."""

    @property
    def stores(self) -> tuple[str, ...]: ...

    def get(self, store: str, key: bytes) -> bytes | None:
        """The value of `key`, or None when absent."""
        ...

    def range(
        self, store: str, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries with `start <= key < end` (None: unbounded) in ascending byte order."""
        ...

    def approximate_count(self, store: str) -> int:
        """Roughly how many keys `store` holds (exact for memory; RocksDB's estimate)."""
        ...

    def write(self, changes: Mapping[str, Sequence[Change]], offsets: Mapping[str, int]) -> None:
        """Apply `changes` (store -> changes, in order) and record `offsets` (changelog topic ->
        offset of the last changelog record these changes include) in one atomic write."""
        ...

    def offsets(self) -> dict[str, int]:
        """Changelog topic -> last offset applied, for every changelog written so far."""
        ...

    def close(self) -> None: ...
