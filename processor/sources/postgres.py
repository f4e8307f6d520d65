"""`PostgresSource`: rows of a table or query, in the order of a timestamp and a unique id.

This is Kafka Connect JDBC's timestamp+incrementing mode. Each poll runs

    SELECT * FROM (<query>) AS source
    WHERE ts <= now() - <delay> AND (ts, id) > (<position's ts>, <position's id>)
    ORDER BY ts, id LIMIT <batch_rows>

and the position after a row is its `{"timestamp": ts as ISO 8601, "id": id}`, so after a
restart reading resumes strictly after the last row produced. An index on `(ts, id)` makes every
poll one index range scan.

What is read, and the limit of it:

- A transaction's rows are read if it commits before the database's clock passes their
  timestamp plus `delay_ms`: until then no row with a later timestamp is read either, so a
  transaction that commits late with older timestamps than rows already committed is not
  skipped. A transaction that commits later than that, after rows with greater (ts, id) were
  read, is missed for good. Set `delay_ms` above the longest time between a row's timestamp
  and its commit (with `now()` as the timestamp: the longest transaction writing the table);
  records arrive that much later. The delay is measured on the database's clock (`now()`), so
  the workers' clocks do not matter; timestamps written from an application's clock add its
  skew to that time.
- The id must be unique among rows with the same timestamp (a serial or identity primary key
  is); rows whose timestamp or id is NULL are never read.
- A row updated with a new timestamp is read again (the topic becomes a changelog of the
  rows); deleted rows are not seen.
- `timestamp` columns without a time zone are taken as UTC (the session's time zone is UTC).

Values are dicts of column name to a JSON-friendly value (`processor.sources.json_values`:
timestamps as ISO 8601 strings, numeric as exact strings, bytea as base64, ...). Headers:
`processor.source.table` (or `processor.source.query`: its text) and `processor.source.cursor`
(the row's `[timestamp, id]` as JSON). The record's timestamp is when it is produced, not the
row's: Kafka deletes records by their timestamp, so old rows would be dropped at once.

A lost connection (the server restarted, the network failed) makes that `poll` raise
`SourceUnavailableError` without reading anything; the next `poll` connects again and goes on
from the same position. Other database errors (no such table or column, no permission) raise
`SourceError` with the server's message: they need a person.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from processor.sources.base import (
    Position,
    Source,
    SourceError,
    SourceItem,
    SourceReader,
    SourceUnavailableError,
)
from processor.sources.json_values import json_row

__all__ = ["CURSOR_HEADER", "QUERY_HEADER", "TABLE_HEADER", "PostgresSource"]

TABLE_HEADER = "processor.source.table"
QUERY_HEADER = "processor.source.query"
CURSOR_HEADER = "processor.source.cursor"
# A server that does not answer within this is taken as down (the runtime polls again later).
_CONNECT_TIMEOUT_S = 10


class PostgresSource(Source):
    """Rows of `table` (or of `query`, wrapped as a subquery) from the PostgreSQL at `dsn`, read
    in (`timestamp_column`, `id_column`) order once they are `delay_ms` old (see the module
    docstring for the guarantee). `table` may be schema-qualified ("sales.orders").
    `batch_rows`: rows fetched per query. `key`: the record key from the row's dict."""

    def __init__(
        self,
        dsn: str,
        *,
        table: str | None = None,
        query: str | None = None,
        timestamp_column: str,
        id_column: str,
        delay_ms: int = 5_000,
        batch_rows: int = 10_000,
        key: Callable[[Any], Any] | None = None,
        name: str = "",
        poll_interval_ms: int = 1_000,
    ) -> None:
        self.table = table
        self.query = query
        self.timestamp_column = timestamp_column
        self.id_column = id_column
        self.delay_ms = delay_ms
        self.batch_rows = batch_rows
        self.key = key
        self.name = name
        self.poll_interval_ms = poll_interval_ms
        self.label = name or table or "query"
        if (table is None) == (query is None):
            raise SourceError(self.label, "give either table= or query= (exactly one of them)")
        if delay_ms < 0 or batch_rows < 1:
            raise SourceError(
                self.label,
                f"delay_ms={delay_ms} and batch_rows={batch_rows}: the delay cannot be "
                "negative and a batch needs at least one row",
            )
        try:
            self.connect_params: dict[str, Any] = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as e:
            # The message of the error would repeat the DSN, password included.
            raise SourceError(self.label, "dsn is not a valid PostgreSQL connection string") from e
        self.connect_params.setdefault("connect_timeout", _CONNECT_TIMEOUT_S)
        self.connect_params.setdefault("application_name", f"processor source {self.label}")

    def reader(self) -> SourceReader:
        return PostgresReader(self)

    def describe(self) -> str:
        what = f"table {self.table}" if self.table else "a query"
        return (
            f"PostgresSource({what}, order by ({self.timestamp_column}, {self.id_column}), "
            f"delay {self.delay_ms} ms)"
        )


class PostgresReader(SourceReader):
    """Reads a `PostgresSource`: one connection, `batch_rows` rows per query, handed out by
    `poll` from a buffer."""

    def __init__(self, source: PostgresSource) -> None:
        self._source = source
        self._conn: psycopg.Connection[Any] | None = None
        self._after: tuple[str, Any] | None = None
        """The cursor of the last row fetched (not yet necessarily handed out)."""
        self._buffer: deque[SourceItem] = deque()
        self._origin = (
            (TABLE_HEADER, source.table.encode())
            if source.table is not None
            else (QUERY_HEADER, (source.query or "").encode())
        )
        self._first_query, self._next_query = _queries(source)

    def open(self, position: Position | None) -> None:
        self._buffer.clear()
        self._after = None
        if position is not None:
            if not isinstance(position.get("timestamp"), str) or "id" not in position:
                raise SourceError(
                    self._source.label,
                    f"the recorded position {position!r} is not a database source's "
                    '{"timestamp": ..., "id": ...}: was the name reused for another kind of '
                    "source? Give this source a new name to start over",
                )
            self._after = (position["timestamp"], position["id"])

    def poll(self, max_records: int) -> list[SourceItem]:
        if not self._buffer:
            self._fetch()
        count = min(max_records, len(self._buffer))
        return [self._buffer.popleft() for _ in range(count)]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(**self._source.connect_params, autocommit=True)
            conn.execute("SET TIME ZONE 'UTC'")
            self._conn = conn
        return self._conn

    def _fetch(self) -> None:
        params: dict[str, Any] = {
            "delay": timedelta(milliseconds=self._source.delay_ms),
            "limit": self._source.batch_rows,
        }
        if self._after is not None:
            params["ts"], params["id"] = self._after
        query = self._first_query if self._after is None else self._next_query
        try:
            cursor = self._connection().execute(query, params)
            rows = cursor.fetchall()
        except psycopg.OperationalError as e:
            self.close()
            raise SourceUnavailableError(
                self._source.label,
                f"cannot reach PostgreSQL ({str(e).strip()}); nothing was read, the next poll "
                "connects again",
            ) from e
        except psycopg.Error as e:
            raise SourceError(self._source.label, self._query_problem(e)) from e
        if rows:
            columns = [column.name for column in cursor.description or ()]
            self._buffer.extend(self._items(columns, rows))

    def _items(self, columns: list[str], rows: list[tuple[Any, ...]]) -> list[SourceItem]:
        if len(set(columns)) != len(columns):
            repeated = sorted({c for c in columns if columns.count(c) > 1})
            raise SourceError(
                self._source.label,
                f"the query returns the column names {repeated} more than once: give each "
                "column its own name (AS ...)",
            )
        ts_column, id_column = self._source.timestamp_column, self._source.id_column
        ts_at = columns.index(ts_column)
        if not isinstance(rows[0][ts_at], date):  # datetime is a date too
            raise SourceError(
                self._source.label,
                f"timestamp_column {ts_column!r} holds {type(rows[0][ts_at]).__name__} values: "
                "it must be a timestamp, timestamptz or date column",
            )
        items = []
        for row in rows:
            value = json_row(columns, row)
            cursor = (value[ts_column], value[id_column])
            items.append(
                SourceItem(
                    value=value,
                    headers=(self._origin, (CURSOR_HEADER, _cursor_json(*cursor))),
                    position={"timestamp": cursor[0], "id": cursor[1]},
                )
            )
        self._after = cursor
        return items

    def _query_problem(self, error: psycopg.Error) -> str:
        source = self._source
        what = f"table {source.table!r}" if source.table else f"query {source.query!r}"
        message = error.diag.message_primary or str(error)
        return (
            f"reading {what} ordered by ({source.timestamp_column!r}, {source.id_column!r}) "
            f"failed: {message}; check table=/query= and the column names"
        )


def _cursor_json(ts: str, id_: Any) -> bytes:
    """`json.dumps([ts, id_])`, faster: an ISO 8601 string has nothing to escape."""
    id_json = str(id_) if type(id_) is int else json.dumps(id_)
    return f'["{ts}", {id_json}]'.encode()


def _queries(source: PostgresSource) -> tuple[sql.Composed, sql.Composed]:
    """The query for the first batch (no position yet) and for those after a position."""
    if source.table is not None:
        relation: sql.Composable = sql.Identifier(*source.table.split(".", 1))
    else:
        # Parameters are passed, so a literal % of the user's query must be doubled.
        text = (source.query or "").strip().rstrip(";").replace("%", "%%")
        relation = sql.SQL("({})").format(sql.SQL(text))
    ts, id_ = sql.Identifier(source.timestamp_column), sql.Identifier(source.id_column)
    select = sql.SQL("SELECT * FROM {} AS processor_source WHERE {} <= now() - %(delay)s").format(
        relation, ts
    )
    order = sql.SQL(" ORDER BY {}, {} LIMIT %(limit)s").format(ts, id_)
    after = sql.SQL(" AND ({}, {}) > (%(ts)s, %(id)s)").format(ts, id_)
    return select + order, select + after + order
