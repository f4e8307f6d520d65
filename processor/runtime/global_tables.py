"""The global thread: keeps this worker's copy of every global table, as Kafka Streams' global
stream thread does.

Lifecycle (illegal transitions raise):

```
CREATED --start()--> RESTORING --(every partition read to its end)--> RUNNING
   |                     |                                               |
   +---------------------+-----------------------------------------------+--> CLOSED
                         +--(an error: the main thread raises it)--> FAILED
```

- start() (main thread): reads each partition's checkpoint (`processor.state.global_store`)
  and the topic's offsets; a checkpoint outside what the topic holds (the topic was recreated,
  or retention deleted records never read) wipes the global stores, with a warning, and every
  table is read from its beginning. It assigns every partition of every global topic to the
  global consumer from checkpoint + 1 and starts the thread.
- RESTORING: the thread reads in batches, each batch one write with its partition's new
  checkpoint, logging its progress (records, records/s). The worker's tasks wait: a worker joins
  its group only once every partition has reported its end (`restored()`), so that no task
  processes against a table that is still loading.
- RUNNING: the thread follows the topics: updates and tombstones are applied as they arrive.
  A join sees a new row as soon as its batch is written, so a record processed after an update
  was read sees it; it does not wait for it (the thread holds the interpreter for one batch at a
  time, a few milliseconds).

Exactly-once: the global stores are not part of any transaction, in Kafka Streams either. Under
exactly-once the global consumer reads with isolation.level=read_committed, so a table follows
committed data only; a task's transaction may read a row that a later restart reads again, or
one newer than its inputs' position: global tables are for reference data, not for results
that must be exact to the record.

Which thread owns what: the global thread alone uses the consumer and writes the backend, from
start() until close(); the main thread reads the stores (joins) and `restored()`/`check()`,
which raise the thread's failure; the state under `_lock` is the failure and the counters.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from processor.errors import ProcessorError, StateError, TopicError
from processor.ids import Partition
from processor.state.global_store import (
    GlobalRecords,
    GlobalStore,
    GlobalStores,
    offset_key,
    undecodable_handler,
)
from processor.state.restore_protocols import PartitionEnd
from processor.state.rocksdb import open_or_wipe, wipe
from processor.topology.global_tables import GlobalTableSpec
from processor.topology.handling import ErrorHandler

__all__ = ["GLOBAL_DIR", "GlobalReader", "GlobalTables", "GlobalTablesState"]

log = logging.getLogger("processor.global")

GLOBAL_DIR = "global"
"""The global stores' directory under the application's state directory, as Kafka Streams'."""
BATCH_RECORDS = 20_000
"""Records per read: one write per partition's run of them, large enough that the per-batch
costs (a Python call, a RocksDB write) vanish, small enough to hold the interpreter only
milliseconds at a time."""
RESTORE_POLL_S = 0.1
FOLLOW_POLL_S = 0.5
"""How long a read waits for records while following: how quickly close() is noticed."""
PROGRESS_INTERVAL_S = 5.0
"""How often a long restore logs its progress."""
OFFSETS_TIMEOUT_S = 30.0


class GlobalReader(Protocol):
    """The global consumer (`processor.kafka.global_reader.GlobalTopicReader`)."""

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]: ...
    def assign(self, start_offsets: Mapping[Partition, int]) -> None: ...
    def consume_records(
        self, max_records: int, timeout: float
    ) -> list[GlobalRecords | PartitionEnd]: ...
    def close(self) -> None: ...


class GlobalTablesState(Enum):
    CREATED = "created"
    RESTORING = "restoring"
    RUNNING = "running"
    FAILED = "failed"
    CLOSED = "closed"


_TRANSITIONS: dict[GlobalTablesState, frozenset[GlobalTablesState]] = {
    GlobalTablesState.CREATED: frozenset({GlobalTablesState.RESTORING, GlobalTablesState.CLOSED}),
    GlobalTablesState.RESTORING: frozenset(
        {GlobalTablesState.RUNNING, GlobalTablesState.FAILED, GlobalTablesState.CLOSED}
    ),
    GlobalTablesState.RUNNING: frozenset({GlobalTablesState.FAILED, GlobalTablesState.CLOSED}),
    GlobalTablesState.FAILED: frozenset({GlobalTablesState.CLOSED}),
    GlobalTablesState.CLOSED: frozenset(),
}


class GlobalTables:
    """This worker's global tables: their stores (for the tasks' joins) and the thread that
    keeps them (see the module docstring)."""

    def __init__(
        self,
        tables: Sequence[GlobalTableSpec],
        app_state_dir: Path,
        reader: Callable[[], GlobalReader],
        partition_counts: Callable[[Sequence[str]], Mapping[str, int | None]],
        *,
        deserialization: ErrorHandler,
    ) -> None:
        self.state = GlobalTablesState.CREATED
        self._tables = tuple(tables)
        self._path = app_state_dir / GLOBAL_DIR
        self._make_reader = reader
        self._partition_counts = partition_counts
        self._undecodable = undecodable_handler(deserialization)
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._stopping = threading.Event()
        self._restored = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: GlobalReader | None = None
        self._globals: GlobalStores | None = None
        self.records_applied = 0  # ever, by this worker's thread
        self.restore_records = 0
        self.restore_seconds = 0.0
        if self._tables:
            backend, _ = open_or_wipe(self._path, [t.name for t in self._tables], "global", log)
            self._globals = GlobalStores(backend, self._tables, self._undecodable)

    @property
    def stores(self) -> Mapping[str, GlobalStore[Any, Any]]:
        """The global stores by name, for the tasks' joins (empty without global tables)."""
        return self._globals.stores if self._globals is not None else {}

    def _transition(self, target: GlobalTablesState) -> None:
        with self._lock:
            if target not in _TRANSITIONS[self.state]:
                raise ProcessorError(
                    f"global tables: illegal transition {self.state.value} -> {target.value}"
                )
            self.state = target

    # --- main thread ------------------------------------------------------------------------

    def start(self) -> None:
        """Assign every partition from its checkpoint and start the thread (nothing to do
        without global tables)."""
        if self._globals is None:
            self._restored.set()
            return
        reader = self._reader = self._make_reader()
        partitions = self._partitions()
        starts, ends = self._start_offsets(reader, partitions)
        to_read = sum(max(0, ends[p] - starts[p]) for p in partitions)
        assert self._globals is not None
        log.info(
            "global tables %s: %d partitions, restoring about %d records %s",
            ", ".join(t.name for t in self._tables),
            len(partitions),
            to_read,
            "since the checkpoint" if self._globals.checkpoints() else "from the start",
        )
        reader.assign(starts)
        self._transition(GlobalTablesState.RESTORING)
        self._thread = threading.Thread(
            target=self._run,
            args=(reader, set(partitions), to_read),
            name="processor-global",
            daemon=True,
        )
        self._thread.start()

    def restored(self) -> bool:
        """Whether every global table has been read to its end once (raises the thread's
        failure)."""
        self.check()
        return self._restored.is_set()

    def check(self) -> None:
        """Raise what stopped the global thread, if anything did."""
        with self._lock:
            failure = self._failure
        if failure is not None:
            raise StateError(f"the global tables' thread stopped: {failure}") from failure

    def close(self) -> None:
        """Stop the thread, close the consumer and the stores. Idempotent."""
        if self.state is GlobalTablesState.CLOSED:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._reader is not None:
            self._reader.close()
        if self._globals is not None:
            self._globals.close()
        self._transition(GlobalTablesState.CLOSED)

    def _partitions(self) -> list[Partition]:
        topics = [t.topic for t in self._tables]
        counts = self._partition_counts(topics)
        missing = [topic for topic in topics if not counts.get(topic)]
        if missing:
            raise TopicError(
                missing[0],
                "the topic of a global table does not exist; create it (any partition count) "
                "before starting the workers",
            )
        return [(topic, p) for topic in topics for p in range(counts[topic] or 0)]

    def _start_offsets(
        self, reader: GlobalReader, partitions: Sequence[Partition]
    ) -> tuple[dict[Partition, int], dict[Partition, int]]:
        """Where each partition is read from (checkpoint + 1, or the topic's start) and its end
        now. A checkpoint outside the topic's offsets wipes the stores (see the docstring)."""
        assert self._globals is not None
        marks = {p: reader.watermarks(p[0], p[1], OFFSETS_TIMEOUT_S) for p in partitions}
        checkpoints = self._globals.checkpoints()
        starts: dict[Partition, int] = {}
        for p, (low, high) in marks.items():
            stored = checkpoints.get(offset_key(*p))
            if stored is None:
                starts[p] = low
            elif low <= stored + 1 <= high:
                starts[p] = stored + 1
            else:
                log.warning(
                    "global table topic %s[%d]: the checkpoint (offset %d) is outside the "
                    "topic's offsets %d..%d (recreated, or records deleted before they were "
                    "read); wiping the global stores and reading every table from its start",
                    p[0],
                    p[1],
                    stored,
                    low,
                    high,
                )
                self._wipe()
                return {q: lo for q, (lo, _) in marks.items()}, {
                    q: h for q, (_, h) in marks.items()
                }
        return starts, {p: high for p, (_, high) in marks.items()}

    def _wipe(self) -> None:
        assert self._globals is not None
        self._globals.close()
        wipe(self._path)
        backend, _ = open_or_wipe(self._path, [t.name for t in self._tables], "global", log)
        self._globals = GlobalStores(backend, self._tables, self._undecodable)

    # --- global thread ----------------------------------------------------------------------

    def _run(self, reader: GlobalReader, restoring: set[Partition], to_read: int) -> None:
        try:
            self._restore(reader, restoring, to_read)
            while not self._stopping.is_set():
                self._read(reader, FOLLOW_POLL_S)
        except BaseException as e:
            log.error("global tables: the global thread stopped: %s", e)
            with self._lock:
                self._failure = e
            self._transition(GlobalTablesState.FAILED)

    def _restore(self, reader: GlobalReader, restoring: set[Partition], to_read: int) -> None:
        started = last_log = time.monotonic()
        applied = 0
        while restoring and not self._stopping.is_set():
            records, ended = self._read(reader, RESTORE_POLL_S)
            applied += records
            restoring -= ended
            now = time.monotonic()
            if restoring and now - last_log >= PROGRESS_INTERVAL_S:
                last_log = now
                log.info(
                    "global tables: restoring, %d records read, about %d remaining, %.0f records/s",
                    applied,
                    max(0, to_read - applied),
                    applied / max(now - started, 1e-9),
                )
        elapsed = time.monotonic() - started
        self.restore_records, self.restore_seconds = applied, elapsed
        log.info(
            "global tables: restored %d records in %.1f s (%.0f records/s); following them",
            applied,
            elapsed,
            applied / max(elapsed, 1e-9),
        )
        if restoring:
            return  # stopping
        self._transition(GlobalTablesState.RUNNING)
        self._restored.set()

    def _read(self, reader: GlobalReader, timeout: float) -> tuple[int, set[Partition]]:
        """One read, applied; returns the records read and the partitions that reported
        their end."""
        assert self._globals is not None
        read = 0
        ended: set[Partition] = set()
        for item in reader.consume_records(BATCH_RECORDS, timeout):
            if isinstance(item, PartitionEnd):
                ended.add((item.topic, item.partition))
                continue
            self._globals.apply(item)
            read += len(item.offsets)
        self.records_applied += read
        return read, ended
