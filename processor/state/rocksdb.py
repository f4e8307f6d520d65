"""The RocksDB `TaskStateBackend`: one database per task directory (rocksdict, raw bytes), a
column family per store, and one more, `__meta__`, holding the changelog offsets (changelog topic
name in UTF-8 -> 8-byte big-endian offset).

Each `write()` is one `WriteBatch` holding every store's changes and the offsets, so data and
offsets are on disk together or not at all. The write-ahead log is on but not fsynced per write:
a crashed process loses nothing, a crashed machine may lose the last writes, but never half of
one (point-in-time recovery replays whole batches only); the changelog fills in the rest.

Tasks are many and mostly small, so memory is shared rather than per database: one block cache
and one write-buffer budget for every task of the process, small memtables, LZ4 compression,
bloom filters for point lookups.
"""

from __future__ import annotations

import logging
import shutil
import struct
import weakref
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, cast

from rocksdict import (
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    DBCompressionType,
    DBRecoveryMode,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from processor.errors import StateError, StoreCorruptedError, StoreLockedError
from processor.state.backend import Change

META_FAMILY = "__meta__"
"""The column family holding changelog offsets; no store may use this name."""

_OFFSET = struct.Struct(">q")  # Kafka offsets are signed 64-bit
_ESTIMATE_KEYS = "rocksdb.estimate-num-keys"

BLOCK_CACHE_BYTES = 64 << 20
"""Block cache shared by every task database of the process."""
WRITE_BUFFER_BUDGET_BYTES = 256 << 20
"""Memtable memory shared by every task database of the process; beyond it memtables flush."""
WRITE_BUFFER_BYTES = 4 << 20
"""Memtable size per column family (RocksDB's default, 64 MiB, is sized for one big database)."""


@cache
def _shared_block_cache() -> Cache:
    return Cache(BLOCK_CACHE_BYTES)


@cache
def _shared_write_buffers() -> WriteBufferManager:
    return WriteBufferManager(WRITE_BUFFER_BUDGET_BYTES, False)


def _options() -> Options:
    """Database and column family options (RocksDB takes both from one object)."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    options.set_compression_type(DBCompressionType.lz4())
    options.set_write_buffer_size(WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(3)
    options.set_write_buffer_manager(_shared_write_buffers())
    # With many column families, old WAL files live until every family has flushed; this bounds
    # the WAL by flushing the laggards (the tiny `__meta__` family, mostly).
    options.set_max_total_wal_size(4 * WRITE_BUFFER_BYTES)
    options.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    options.set_keep_log_file_num(2)
    options.set_max_log_file_size(1 << 20)
    table = BlockBasedOptions()
    table.set_block_cache(_shared_block_cache())
    table.set_bloom_filter(10, False)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    options.set_block_based_table_factory(table)
    return options


def _is_lock_error(message: str) -> bool:
    # "While lock file: <dir>/LOCK: ..." (another process), "lock hold by current process"
    return message.startswith("IO error") and (
        "While lock file" in message or "lock hold by" in message
    )


class RocksDBBackend:
    """All stores of one task in one RocksDB database. Open with `open_rocksdb()`.

    Range scans read a consistent snapshot taken when `range()` is called. `close()` ends any
    scan still open (it then stops early), because an open scan keeps the database locked.
    """

    def __init__(self, path: Path, stores: Sequence[str]) -> None:
        """Open (creating if needed) the database in `path` with a column family per store.
        Raises `StoreCorruptedError` or `StoreLockedError` when it cannot be opened."""
        if len(set(stores)) != len(stores):
            raise ValueError(f"store names must be unique, got {list(stores)}")
        if META_FAMILY in stores:
            raise ValueError(f"{META_FAMILY!r} is reserved for changelog offsets")
        self._path = path
        self._stores = tuple(stores)
        self._db: Rdict | None = _open(path, self._stores)
        self._families = {name: self._db.get_column_family(name) for name in self._stores}
        self._handles = {name: self._db.get_column_family_handle(name) for name in self._stores}
        self._meta = self._db.get_column_family_handle(META_FAMILY)
        self._write_options = WriteOptions()  # sync off, WAL on
        self._scans: weakref.WeakSet[_Scan] = weakref.WeakSet()
        try:
            self._offsets = self._read_offsets()
        except StoreCorruptedError:
            self.close()
            raise

    @property
    def path(self) -> Path:
        """The task directory."""
        return self._path

    @property
    def stores(self) -> tuple[str, ...]:
        return self._stores

    def get(self, store: str, key: bytes) -> bytes | None:
        value: bytes | None = self._family(store).get(key)
        return value

    def range(
        self, store: str, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        family = self._family(store)
        bounds = ReadOptions()
        # The seek to `start` is the lower bound. (rocksdict 0.3.29's set_iterate_lower_bound
        # sets the upper bound instead; test_range_bounds catches that.)
        if end is not None:
            bounds.set_iterate_upper_bound(end)
        scan = _Scan(family.items(from_key=start, read_opt=bounds), bounds)
        self._scans.add(scan)
        return scan

    def approximate_count(self, store: str) -> int:
        count: int | None = self._family(store).property_int_value(_ESTIMATE_KEYS)
        return count or 0

    def write(self, changes: Mapping[str, Sequence[Change]], offsets: Mapping[str, int]) -> None:
        db = self._check_open()
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for store, store_changes in changes.items():
            handle = self._handle(store)
            for key, value in store_changes:
                if value is None:
                    delete(key, handle)
                else:
                    put(key, value, handle)
        encoded = {topic: _OFFSET.pack(offset) for topic, offset in offsets.items()}
        for topic, offset_bytes in encoded.items():
            batch.put(topic.encode("utf-8"), offset_bytes, self._meta)
        if not batch.is_empty():
            db.write(batch, self._write_options)
        self._offsets.update(offsets)

    def offsets(self) -> dict[str, int]:
        self._check_open()
        return dict(self._offsets)

    def close(self) -> None:
        """Close the database; the directory stays. Idempotent."""
        db, self._db = self._db, None
        if db is None:
            return
        for scan in list(self._scans):
            scan.close()
        # Every handle keeps the database (and its directory lock) alive: let go of all of them.
        for family in self._families.values():
            family.close()
        self._families.clear()
        self._handles.clear()
        del self._meta
        db.close()

    def _family(self, store: str) -> Rdict:
        try:
            return self._families[store]
        except KeyError:
            self._check_open()
            raise KeyError(f"unknown store {store!r}; this task has {list(self._stores)}") from None

    def _handle(self, store: str) -> ColumnFamily:
        try:
            return self._handles[store]
        except KeyError:
            self._family(store)  # raises the right error
            raise

    def _check_open(self) -> Rdict:
        if self._db is None:
            raise StateError(f"the state backend of {self._path} is closed; open it again")
        return self._db

    def _read_offsets(self) -> dict[str, int]:
        offsets: dict[str, int] = {}
        meta = self._check_open().get_column_family(META_FAMILY)
        try:
            for key, value in meta.items():
                topic = cast(bytes, key).decode("utf-8", errors="replace")
                if len(value) != _OFFSET.size:
                    reason = f"changelog offset of {topic!r} is {len(value)} bytes, not 8"
                    raise StoreCorruptedError(self._path, reason)
                offsets[topic] = _OFFSET.unpack(value)[0]
        finally:
            meta.close()
        return offsets

    def __repr__(self) -> str:
        return f"RocksDBBackend({str(self._path)!r}, stores={list(self._stores)})"


class _Scan:
    """An open range scan; `close()` lets go of the database iterator.

    It holds on to the `ReadOptions` the iterator was made with: RocksDB keeps a pointer to the
    upper bound in them, and once rocksdict frees them the scan ends at random places.
    """

    def __init__(self, items: Iterator[tuple[Any, Any]], options: ReadOptions) -> None:
        self._items: Iterator[tuple[Any, Any]] | None = items
        self._options: ReadOptions | None = options

    def __iter__(self) -> _Scan:
        return self

    def __next__(self) -> tuple[bytes, bytes]:
        if self._items is None:
            raise StopIteration
        try:
            item: tuple[bytes, bytes] = next(self._items)
        except StopIteration:
            self.close()
            raise
        return item

    def close(self) -> None:
        self._items = None  # the iterator first: it points into the options
        self._options = None


def _open(path: Path, stores: tuple[str, ...]) -> Rdict:
    if path.exists() and not path.is_dir():
        raise StoreCorruptedError(path, "it is a file, not a directory")
    path.mkdir(parents=True, exist_ok=True)
    try:
        # RocksDB must open every column family that exists, including those of stores the
        # topology no longer has; they stay untouched.
        existing = Rdict.list_cf(str(path), _options()) if (path / "CURRENT").exists() else []
        names = dict.fromkeys([*existing, *stores, META_FAMILY])
        names.pop("default", None)  # always open
        return Rdict(str(path), _options(), column_families={n: _options() for n in names})
    except Exception as exc:  # rocksdict raises a bare Exception carrying RocksDB's status
        reason = str(exc)
        if _is_lock_error(reason):
            raise StoreLockedError(path, reason) from exc
        raise StoreCorruptedError(path, reason) from exc


def open_rocksdb(path: Path, stores: Sequence[str]) -> RocksDBBackend:
    """Open the task database in `path` (created with its column families when missing).

    Raises `StoreCorruptedError` naming `path` and the cause when the directory holds something
    RocksDB cannot open, and `StoreLockedError` when another process or backend has it open.
    """
    return RocksDBBackend(path, stores)


def wipe(path: Path) -> None:
    """Delete a task directory and everything in it (nothing happens when it does not exist).
    The task's backend must be closed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def open_or_wipe(
    path: Path, stores: Sequence[str], task: str, log: logging.Logger
) -> tuple[RocksDBBackend, bool]:
    """Open the task database in `path`; when it is corrupted, log a warning naming `task` and
    the cause, wipe the directory and open it empty. Returns the backend and whether it was wiped
    (the task must then restore its stores from the changelogs from the beginning).

    A locked directory (`StoreLockedError`) is not corrupted and is never wiped."""
    try:
        return open_rocksdb(path, stores), False
    except StoreCorruptedError as exc:
        log.warning(
            "task %s: state directory %s cannot be opened (%s); wiping it, the stores will be "
            "restored from their changelogs",
            task,
            path,
            exc.reason,
        )
    wipe(path)
    return open_rocksdb(path, stores), True
