"""`PostgresSink`: rows into a PostgreSQL table, appended or upserted, exactly once.

    orders.sink(PostgresSink("postgresql://...", table="orders", key_columns=["order_id"],
                             mode="upsert"))

Each sink task (one partition of the sink's topic) has a `PostgresWriter`, driven by the
runtime as `processor.sinks.base` describes:

1. `open()` reads the table's columns from the catalog (refusing a missing table, a key column
   it lacks, an upsert without a unique index on the key columns), and, exactly once, takes
   the task over in the offsets table (`pg_offsets`) and returns the offset recorded there.
2. `prepare(record)` checks the record's dict value against the columns (`pg_rows`,
   `pg_types`): the writer thread then only copies.
3. `write(batch)` is one transaction: [exactly once: lock the task's offsets row, refuse if
   fenced, skip a batch already applied] then COPY the rows (append), or COPY them into a
   temporary staging table and `INSERT ... SELECT ... ON CONFLICT (key columns) DO UPDATE`
   (upsert, the last record of a key in the batch winning) [exactly once: record the batch's
   next offset] and commit.
4. A lost connection (`psycopg.OperationalError`: the server restarting, the network) leaves
   `write` as is; the runtime calls it again with the same batch, and it reconnects. Whether
   the lost commit happened or not, the offsets row says: a batch already applied is not
   applied again. Reconnecting does not take the task over again: a writer fenced while it
   was disconnected stays fenced.

With `exactly_once=False` there is no offsets table: a batch the runtime retries after an
unknown commit outcome may be written twice (harmless for upserts; duplicates for appends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from processor.sinks.base import Sink, SinkBatch, SinkError, SinkRecord, SinkTask, SinkWriter
from processor.sinks.pg_catalog import read_table, require_columns, require_unique_key
from processor.sinks.pg_offsets import SinkOffsets, TaskOffsets
from processor.sinks.pg_rows import PreparedRow, RowMapper
from processor.sinks.pg_write import RowWriter

__all__ = ["PostgresSink", "PostgresWriter"]

Mode = Literal["append", "upsert"]
# A server that does not answer a connection attempt within this long is treated as down
# (the write is retried), unless the DSN sets its own connect_timeout.
_CONNECT_TIMEOUT_S = 10


class PostgresSink(Sink):
    """Writes dict values as rows of `table` in the database `dsn` names.

    - `key_columns`: the columns identifying a row; `mode="upsert"` needs them and a primary
      key or unique index on exactly them.
    - `mode`: `"append"` (default) inserts every record; `"upsert"` inserts or updates by key.
    - `exactly_once` (default True): rows and the task's offsets are committed together in the
      table `processor_sink_offsets` (created if missing); False: at-least-once, no table.
    - `include_key`: a column that receives the record's Kafka key (default: the key is not
      written).
    - `ignore_unknown_keys` (default False): a value key that is not a column is refused
      (`SinkRecordError`, to the processing error handler); True drops it silently.
    - `max_batch_records`, `max_batch_ms`, `max_buffer_bytes`: see `Sink`.
    """

    def __init__(
        self,
        dsn: str,
        table: str,
        *,
        key_columns: Sequence[str] = (),
        mode: Mode = "append",
        exactly_once: bool = True,
        include_key: str | None = None,
        ignore_unknown_keys: bool = False,
        max_batch_records: int = 10_000,
        max_batch_ms: int = 500,
        max_buffer_bytes: int = 32 << 20,
    ) -> None:
        if mode not in ("append", "upsert"):
            raise SinkError(f"postgres {table}", f"mode={mode!r}: use 'append' or 'upsert'")
        if isinstance(key_columns, str):
            raise SinkError(
                f"postgres {table}", f"key_columns={key_columns!r}: give a list of column names"
            )
        self.dsn = dsn
        self.table = table
        self.key_columns = tuple(key_columns)
        self.mode: Mode = mode
        self.exactly_once = exactly_once
        self.include_key = include_key
        self.ignore_unknown_keys = ignore_unknown_keys
        self.max_batch_records = max_batch_records
        self.max_batch_ms = max_batch_ms
        self.max_buffer_bytes = max_buffer_bytes

    @property
    def label(self) -> str:
        """How errors name this sink: its name, or `postgres <table>` before it has one."""
        return self.name or f"postgres {self.table}"

    def writer(self, task: SinkTask) -> PostgresWriter:
        return PostgresWriter(self, task)

    def describe(self) -> str:
        keys = f", key_columns={list(self.key_columns)}" if self.key_columns else ""
        return (
            f"PostgresSink(table={self.table}, mode={self.mode}{keys}, "
            f"exactly_once={self.exactly_once}, database={self._address()})"
        )

    def progress(self, application_id: str, topic: str) -> SinkOffsets | None:
        if not self.exactly_once:
            return None
        return SinkOffsets(
            lambda: connect(self.dsn),
            f"database {self._address()}",
            application_id,
            self.name,
            topic,
        )

    def _address(self) -> str:
        where = conninfo_to_dict(self.dsn)
        return f"{where.get('host', 'localhost')}:{where.get('port', 5432)}/{where.get('dbname')}"


def connect(dsn: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection, timing out after `_CONNECT_TIMEOUT_S` unless `dsn` says."""
    if "connect_timeout" not in conninfo_to_dict(dsn):
        dsn = make_conninfo(dsn, connect_timeout=_CONNECT_TIMEOUT_S)
    return psycopg.connect(dsn, autocommit=True)


class PostgresWriter(SinkWriter):
    """One sink task's writer; see the module docstring."""

    def __init__(self, sink: PostgresSink, task: SinkTask) -> None:
        self._sink = sink
        self._label = sink.label
        self._offsets = TaskOffsets(task, sink.label) if sink.exactly_once else None
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._mapper: RowMapper | None = None
        self._rows: RowWriter | None = None

    # --- writer thread

    def open(self) -> int | None:
        try:
            return self._open()
        except BaseException:
            self._disconnect()
            raise

    def _open(self) -> int | None:
        sink = self._sink
        conn = self._connection()
        table = read_table(conn, sink.table, self._label)
        require_columns(table, sink.key_columns, "key_columns", self._label)
        if sink.include_key is not None:
            require_columns(table, [sink.include_key], "include_key", self._label)
        if sink.mode == "upsert":
            require_unique_key(table, sink.key_columns, self._label)
        self._mapper = RowMapper(
            table,
            sink=self._label,
            key_columns=sink.key_columns,
            include_key=sink.include_key,
            ignore_unknown_keys=sink.ignore_unknown_keys,
        )
        self._rows = RowWriter(self._mapper, sink.mode, sink.key_columns)
        self._rows.attach(conn)
        return None if self._offsets is None else self._offsets.take_over(conn)

    def write(self, batch: SinkBatch) -> int | None:
        rows = self._opened_rows()
        conn = self._connection()
        try:
            with conn.transaction():
                if self._offsets is not None:
                    recorded = self._offsets.claim(conn).next_offset
                    if recorded is not None and recorded >= batch.next_offset:
                        return recorded  # applied before: a retry after a lost commit reply
                rows.write(conn, batch.items)
                if self._offsets is not None:
                    self._offsets.advance(conn, batch.next_offset)
        except psycopg.OperationalError:
            self._disconnect()  # the next write reconnects
            raise
        except psycopg.Error as exc:
            raise SinkError(
                self._label,
                f"PostgreSQL refused offsets [{batch.first_offset}, {batch.next_offset}) for "
                f"{self._sink.table}: {type(exc).__name__}: {exc}",
            ) from exc
        return batch.next_offset

    def close(self) -> None:
        self._disconnect()

    # --- main thread

    def prepare(self, record: SinkRecord) -> PreparedRow:
        if self._mapper is None:
            raise SinkError(self._label, "prepare() before open(): the runtime must open first")
        return self._mapper.row(record.key, record.value)

    def size_of(self, item: Any) -> int:
        # A tuple of a few small objects: about 60 bytes each, plus the text of strings.
        values: tuple[Any, ...] = item[1]
        return 100 + sum(len(v) if type(v) is str else 60 for v in values)

    # --- connection

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._disconnect()
        conn = connect(self._sink.dsn)
        try:
            if self._rows is not None:
                self._rows.attach(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _opened_rows(self) -> RowWriter:
        if self._rows is None:
            raise SinkError(self._label, "write() before open(): the runtime must open first")
        return self._rows
