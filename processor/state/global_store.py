"""Global stores: every global table of the topology in one local database, and how records of
their topics are applied to it.

One backend (RocksDB in a worker, under `<state_dir>/<application_id>/global/`; memory in the
test driver) holds a column family per global table, plus the offsets: `<topic>[<partition>]`
-> the offset of the last record applied. Each batch of records is written in one `write()`
with its partition's new offset, so the store and its checkpoint never disagree: a restarted
worker reads each partition from its checkpoint + 1, only what is new. There is no changelog:
the topic is one.

Records are stored as their bytes, as the topic has them (a lookup serializes its key with the
table's key serde, as Kafka Streams does). Each record is decoded once with the table's serdes
on the way in, so that an undecodable one goes to the deserialization handler rather than into
the store; a record with a null key is skipped with a warning naming its position (Kafka
Streams' rule: a table row needs a key); a null value deletes its key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from processor.errors import RecordError, StoredValueError, TopologyError, TransientError
from processor.serdes import Serde
from processor.state.backend import Change, TaskStateBackend
from processor.state.global_decode import batch_check
from processor.topology.global_tables import GlobalTableSpec
from processor.topology.handling import ErrorHandler

__all__ = [
    "GlobalRecords",
    "GlobalStore",
    "GlobalStores",
    "Undecodable",
    "offset_key",
    "undecodable_handler",
]

_log = logging.getLogger("processor.global")

K = TypeVar("K")  # the type of a global table's keys
V = TypeVar("V")  # the type of its rows


def offset_key(topic: str, partition: int) -> str:
    """How the backend names a partition's checkpoint (topic names have no brackets)."""
    return f"{topic}[{partition}]"


@dataclass(frozen=True)
class GlobalRecords:
    """Consecutive records of one partition of a global table's topic: `keys[i]`,
    `values[i]` at `offsets[i]`; `last_offset` is the partition's position after them (it may
    be beyond `offsets[-1]`, past records that carried nothing, such as null keys)."""

    topic: str
    partition: int
    last_offset: int
    keys: Sequence[bytes | None]
    values: Sequence[bytes | None]
    offsets: Sequence[int]


# (table, partition, offset, key bytes, value bytes, error) -> None: handle an undecodable
# record (skip it, or raise to stop).
Undecodable = Callable[[GlobalTableSpec, int, int, bytes | None, bytes | None, Exception], None]


def undecodable_handler(default: ErrorHandler) -> Undecodable:
    """What happens to an undecodable record of a global table: its table's
    `on_deserialization_error`, else `default` (the application's). skip: a warning and on;
    fail: `RecordError` naming the record, which stops the worker. dead_letter stops too: the
    record is read outside any task (and transaction), so it cannot be sent on with a task's
    outputs; the message says to choose skip or fix the record."""

    def handle(
        table: GlobalTableSpec,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error: Exception,
    ) -> None:
        handler = table.on_deserialization_error or default
        problem = (
            f"global table {table.name!r} cannot deserialize the record "
            f"({type(error).__name__}: {error})"
        )
        if handler is ErrorHandler.SKIP:
            _log.warning("skipping record %s[%d]@%d: %s", table.topic, partition, offset, problem)
            return
        unavailable = (
            " (dead_letter is not available for global tables: their records are read outside "
            "any task)"
            if handler is ErrorHandler.DEAD_LETTER
            else ""
        )
        raise RecordError(
            table.topic,
            partition,
            offset,
            f"{problem}. Stopping{unavailable}: fix the producer or the table's serdes, or give "
            "global_table(..., on_deserialization_error='skip') to skip such records",
        ) from error

    return handle


class GlobalStore(Generic[K, V]):
    """A global table as joins and queries read it: rows by key, through its serdes. Read-only:
    only its topic changes it."""

    def __init__(self, backend: TaskStateBackend, spec: GlobalTableSpec) -> None:
        self.name = spec.name
        self.topic = spec.topic
        self._backend = backend
        self._key_serde = cast(Serde[K], spec.store.key_serde)
        self._value_serde = cast(Serde[V], spec.store.value_serde)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The row of `key`, or `default`. Raises what the key serde raises for a key it
        cannot write, and `StoredValueError` for a row its value serde cannot read."""
        key_bytes = self._key_serde.serialize(key)
        if key_bytes is None:
            return default
        data = self._backend.get(self.name, key_bytes)
        return default if data is None else self._value(data, key)

    def __contains__(self, key: K) -> bool:
        key_bytes = self._key_serde.serialize(key)
        return key_bytes is not None and self._backend.get(self.name, key_bytes) is not None

    def all(self) -> Iterator[tuple[K, V]]:
        """Every row, in serialized-key order."""
        for key_bytes, data in self._backend.range(self.name):
            key = cast(K, self._key_serde.deserialize(key_bytes))
            yield key, self._value(data, key)

    def approximate_count(self) -> int:
        return self._backend.approximate_count(self.name)

    def _value(self, data: bytes, key: object) -> V:
        try:
            return cast(V, self._value_serde.deserialize(data))
        except TransientError:
            raise
        except Exception as e:
            raise StoredValueError(self.name, self._value_serde.name, key, e) from e

    def __repr__(self) -> str:
        return f"GlobalStore({self.name!r}, topic={self.topic!r})"


class GlobalStores:
    """Every global table of a topology over one backend: applies records of their topics and
    keeps the checkpoint. Called by one thread at a time (the driver's, or the worker's global
    thread); the stores it hands out may be read by others meanwhile."""

    def __init__(
        self,
        backend: TaskStateBackend,
        tables: Sequence[GlobalTableSpec],
        undecodable: Undecodable,
    ) -> None:
        self.backend = backend
        self.tables = {t.topic: t for t in tables}
        self._undecodable = undecodable
        # Per topic, the batch checks of its key and value serdes (`global_decode`).
        self._checks = {
            t.topic: (batch_check(t.store.key_serde), batch_check(t.store.value_serde))
            for t in tables
        }
        self.skipped = 0  # records skipped as undecodable (null keys are not counted)
        self.stores: dict[str, GlobalStore[Any, Any]] = {
            t.name: GlobalStore(backend, t) for t in tables
        }

    def table(self, topic: str) -> GlobalTableSpec:
        try:
            return self.tables[topic]
        except KeyError:
            raise TopologyError(
                f"topic {topic!r} is not a global table; the global tables are "
                f"{sorted(self.tables)}"
            ) from None

    def checkpoint(self, topic: str, partition: int) -> int | None:
        """The offset of the last record of `topic[partition]` applied (None: none yet)."""
        return self.backend.offsets().get(offset_key(topic, partition))

    def checkpoints(self) -> Mapping[str, int]:
        return self.backend.offsets()

    def apply(self, records: GlobalRecords) -> int:
        """Apply one partition's records and move its checkpoint to `records.last_offset`, in
        one write; returns how many rows changed (put or deleted)."""
        table = self.table(records.topic)
        changes = self._changes(table, records)
        position = {offset_key(records.topic, records.partition): records.last_offset}
        self.backend.write({table.name: changes} if changes else {}, position)
        return len(changes)

    def _changes(self, table: GlobalTableSpec, records: GlobalRecords) -> list[Change]:
        keys, values = records.keys, records.values
        key_check, value_check = self._checks[table.topic]
        if (
            key_check is not None
            and value_check is not None
            and None not in keys
            and key_check(cast(Sequence[bytes], keys))
            and value_check([v for v in values if v is not None])
        ):
            return list(zip(cast(Sequence[bytes], keys), values, strict=True))
        return self._decoded_changes(table, records)

    def _decoded_changes(self, table: GlobalTableSpec, records: GlobalRecords) -> list[Change]:
        """Record by record: null keys and undecodable records are left out."""
        decode_key = table.store.key_serde.deserialize
        decode_value = table.store.value_serde.deserialize
        changes: list[Change] = []
        append = changes.append
        for key, value, offset in zip(records.keys, records.values, records.offsets, strict=True):
            if key is None:
                _log.warning(
                    "global table %s: skipping the record at %s[%d]@%d: it has a null key, and "
                    "a table row needs one",
                    table.name,
                    records.topic,
                    records.partition,
                    offset,
                )
                continue
            try:
                decode_key(key)
                if value is not None:
                    decode_value(value)
            except TransientError:
                raise  # the serde's registry is away: the record is not at fault
            except Exception as e:
                self._undecodable(table, records.partition, offset, key, value, e)
                self.skipped += 1
                continue
            append((key, value))
        return changes

    def close(self) -> None:
        self.backend.close()
