"""A `TaskStateBackend` in memory, for the in-memory test driver and for tests.

It behaves like the RocksDB backend (the same contract tests run over both) except that nothing
survives `close()`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence

from processor.errors import StateError
from processor.state.backend import Change


class _SortedStore:
    """One store: a dict, plus a sorted key list for range scans that is brought up to date only
    when a scan needs it, so that writes cost a dict operation.

    `_keys` is sorted but may hold keys deleted since (`_stale`) and lacks keys added since
    (`_added`); `_sync()` folds both in.
    """

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []
        self._added: set[bytes] = set()
        self._stale: set[bytes] = set()

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self.data:
            if key in self._stale:
                self._stale.discard(key)  # still in `_keys`
            else:
                self._added.add(key)
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        if self.data.pop(key, None) is None:
            return
        if key in self._added:
            self._added.discard(key)  # never made it into `_keys`
        else:
            self._stale.add(key)

    def sorted_keys(self, start: bytes | None, end: bytes | None) -> list[bytes]:
        """A copy of the present keys with `start <= key < end`, ascending."""
        self._sync()
        keys = self._keys
        lo = 0 if start is None else bisect_left(keys, start)
        hi = len(keys) if end is None else bisect_left(keys, end)
        return keys[lo:hi] if lo < hi else []

    def _sync(self) -> None:
        if self._stale:
            self._keys = [k for k in self._keys if k not in self._stale]
            self._stale.clear()
        if self._added:
            # Two sorted runs: timsort merges them in linear time.
            self._keys.extend(sorted(self._added))
            self._keys.sort()
            self._added.clear()


class InMemoryBackend:
    """All stores of one task in dicts, with the changelog offsets beside them.

    Range scans see the keys present when `range()` is called; a key deleted during the scan is
    skipped, and a value changed during the scan is returned as it is when reached.
    """

    def __init__(self, stores: Sequence[str]) -> None:
        if len(set(stores)) != len(stores):
            raise ValueError(f"store names must be unique, got {list(stores)}")
        self._stores = tuple(stores)
        self._data: dict[str, _SortedStore] | None = {name: _SortedStore() for name in stores}
        self._offsets: dict[str, int] = {}

    @property
    def stores(self) -> tuple[str, ...]:
        return self._stores

    def get(self, store: str, key: bytes) -> bytes | None:
        return self._store(store).data.get(key)

    def range(
        self, store: str, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        target = self._store(store)
        return _scan(target.data, target.sorted_keys(start, end))

    def approximate_count(self, store: str) -> int:
        return len(self._store(store).data)

    def write(self, changes: Mapping[str, Sequence[Change]], offsets: Mapping[str, int]) -> None:
        self._check_open()
        targets = [(self._store(store), store_changes) for store, store_changes in changes.items()]
        for target, store_changes in targets:
            for key, value in store_changes:
                if value is None:
                    target.delete(key)
                else:
                    target.put(key, value)
        self._offsets.update(offsets)

    def offsets(self) -> dict[str, int]:
        self._check_open()
        return dict(self._offsets)

    def close(self) -> None:
        self._data = None

    def _store(self, store: str) -> _SortedStore:
        data = self._check_open()
        try:
            return data[store]
        except KeyError:
            raise KeyError(f"unknown store {store!r}; this task has {list(self._stores)}") from None

    def _check_open(self) -> dict[str, _SortedStore]:
        if self._data is None:
            raise StateError("this in-memory state backend is closed; open a new one")
        return self._data

    def __repr__(self) -> str:
        return f"InMemoryBackend(stores={list(self._stores)})"


def _scan(data: dict[bytes, bytes], keys: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    for key in keys:
        value = data.get(key)
        if value is not None:
            yield key, value
