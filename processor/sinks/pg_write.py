"""The rows of one batch into the table, inside the caller's transaction, with no SQL per row.

- append: `COPY table (columns) FROM STDIN`, the prepared tuples as they are;
- upsert: the batch's last row of each key (applying them one after another would leave the
  same table) is copied into a temporary staging table, then
  `INSERT INTO table SELECT ... FROM staging ON CONFLICT (key columns) DO UPDATE`.

Rows are grouped by shape (the columns a row gives, see `pg_rows`); usually one group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import psycopg
from psycopg import sql

from processor.sinks.pg_rows import PreparedRow, RowMapper, Shape

__all__ = ["RowWriter"]

STAGING_TABLE = "processor_sink_staging"
"""The upsert's temporary staging table (one per connection, emptied at every commit)."""


class RowWriter:
    """Writes prepared rows for one table in one mode."""

    def __init__(self, mapper: RowMapper, mode: str, key_columns: Sequence[str]) -> None:
        self._mapper = mapper
        self._upsert = mode == "upsert"
        self._key_columns = tuple(key_columns)
        self._statements: dict[Shape, tuple[sql.Composed, sql.Composed | None]] = {}
        self._key_of: dict[Shape, Callable[[tuple[Any, ...]], Any]] = {}

    def attach(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Prepare a new connection (the upsert's staging table lives as long as it does)."""
        if not self._upsert:
            return
        table = self._mapper.table
        columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
        # CREATE TABLE AS keeps the types but no constraint: a row leaving out a NOT NULL
        # column that has a default is staged with NULL there, and the INSERT leaves it out.
        conn.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
                "SELECT {columns} FROM {table} WITH NO DATA"
            ).format(staging=sql.Identifier(STAGING_TABLE), columns=columns, table=table.identifier)
        )

    def write(self, conn: psycopg.Connection[tuple[Any, ...]], items: Sequence[Any]) -> None:
        """Write `items` (prepared rows) in `conn`'s current transaction."""
        groups = self._groups(self._last_of_each_key(items) if self._upsert else items)
        with conn.cursor() as cursor:
            for index, (shape, rows) in enumerate(groups.items()):
                copy_statement, insert_statement = self._statements_for(shape)
                with cursor.copy(copy_statement) as copy:
                    for row in rows:
                        copy.write_row(row)
                if insert_statement is not None:
                    cursor.execute(insert_statement)
                    if index < len(groups) - 1:
                        cursor.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(STAGING_TABLE)))

    @staticmethod
    def _groups(items: Sequence[PreparedRow] | Any) -> dict[Shape, list[tuple[Any, ...]]]:
        groups: dict[Shape, list[tuple[Any, ...]]] = {}
        for shape, values in items:
            rows = groups.get(shape)
            if rows is None:
                groups[shape] = rows = []
            rows.append(values)
        return groups

    def _last_of_each_key(self, items: Sequence[PreparedRow]) -> Any:
        latest: dict[Any, PreparedRow] = {}
        key_of = self._key_of
        for item in items:
            shape = item[0]
            get_key = key_of.get(shape) or self._key_getter(shape)
            latest[get_key(item[1])] = item
        return latest.values()

    def _key_getter(self, shape: Shape) -> Callable[[tuple[Any, ...]], Any]:
        names = [column.name for column in self._mapper.columns(shape)]
        getter = itemgetter(*(names.index(key) for key in self._key_columns))
        self._key_of[shape] = getter
        return getter

    def _statements_for(self, shape: Shape) -> tuple[sql.Composed, sql.Composed | None]:
        found = self._statements.get(shape)
        if found is None:
            found = self._statements[shape] = self._build_statements(shape)
        return found

    def _build_statements(self, shape: Shape) -> tuple[sql.Composed, sql.Composed | None]:
        table = self._mapper.table
        names = [column.name for column in self._mapper.columns(shape)]
        columns = sql.SQL(", ").join(map(sql.Identifier, names))
        target = sql.Identifier(STAGING_TABLE) if self._upsert else table.identifier
        copy = sql.SQL("COPY {target} ({columns}) FROM STDIN").format(
            target=target, columns=columns
        )
        if not self._upsert:
            return copy, None
        # A column the rows leave out gets its default on update too: a record is a whole row.
        updates = [
            sql.SQL("{c} = EXCLUDED.{c}" if column.name in names else "{c} = DEFAULT").format(
                c=sql.Identifier(column.name)
            )
            for column in table.columns
            if column.name not in self._key_columns
        ]
        action = (
            sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(updates)
            if updates
            else sql.SQL("DO NOTHING")
        )
        insert = sql.SQL(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM {staging} "
            "ON CONFLICT ({keys}) {action}"
        ).format(
            table=table.identifier,
            columns=columns,
            staging=sql.Identifier(STAGING_TABLE),
            keys=sql.SQL(", ").join(map(sql.Identifier, self._key_columns)),
            action=action,
        )
        return copy, insert
