"""What the PostgreSQL sink learns about its target table from the catalog, once, at `open()`:
its columns (type, nullability, default) and the unique indexes an upsert can use; and the
refusals, as `SinkError`s that name the table and say what to do, when the table cannot take
what the sink was configured to write."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from processor.sinks.base import SinkError
from processor.sinks.pg_types import Check, check_for

__all__ = ["Column", "Table", "read_table"]


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    """As the table declares it (format_type), for messages: `varchar(20)`, `integer`."""
    not_null: bool
    has_default: bool
    """A default or an identity: a record may leave the column out."""
    check: Check | None
    expected: str
    """What `check` accepts, in words."""


@dataclass(frozen=True)
class Table:
    identifier: sql.Composable
    """The table, quoted, schema-qualified."""
    display: str
    """`schema.table`, for messages."""
    columns: tuple[Column, ...]
    """Every column a record can write, in table order (generated columns are left out)."""
    unique_keys: tuple[frozenset[str], ...]
    """The column sets of its primary key and plain unique indexes (what ON CONFLICT infers)."""


_RELATION = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""
# A domain is checked as its base type.
_COLUMNS = """
SELECT a.attname,
       format_type(a.atttypid, a.atttypmod),
       CASE WHEN t.typtype = 'd' THEN b.typname ELSE t.typname END,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       a.attnotnull,
       a.atthasdef OR a.attidentity <> ''
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = t.typbasetype
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = ''
ORDER BY a.attnum
"""
_UNIQUE_KEYS = """
SELECT array_agg(a.attname::text)
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL
  AND i.indexprs IS NULL
GROUP BY i.indexrelid
"""


def read_table(conn: psycopg.Connection[tuple[Any, ...]], table: str, sink: str) -> Table:
    """`table` (a name as SQL would resolve it: `orders`, `sales.orders`) from the catalog;
    `SinkError` when it is not a table."""
    relation = conn.execute(_RELATION, (table,)).fetchone()
    database = conn.info.dbname
    if relation is None:
        raise SinkError(
            sink,
            f"table {table!r} does not exist in database {database!r}: create it before the "
            "sink starts (the sink writes rows into an existing table, it does not create one)",
        )
    schema, name, kind = str(relation[0]), str(relation[1]), str(relation[2])
    if kind not in ("r", "p"):
        raise SinkError(
            sink, f"{schema}.{name} in database {database!r} is not a table: name a table"
        )
    columns = tuple(_column(*row) for row in conn.execute(_COLUMNS, (table,)).fetchall())
    unique_keys = tuple(
        frozenset(row[0]) for row in conn.execute(_UNIQUE_KEYS, (table,)).fetchall()
    )
    return Table(sql.Identifier(schema, name), f"{schema}.{name}", columns, unique_keys)


def _column(
    name: str, declared: str, type_name: str, modifier: int, not_null: bool, has_default: bool
) -> Column:
    check, expected = check_for(type_name, modifier)
    return Column(name, declared, not_null, has_default, check, expected)


def require_columns(table: Table, names: Sequence[str], role: str, sink: str) -> None:
    """`SinkError` unless every one of `names` (the sink's `role`: key columns...) is a column
    of `table`."""
    known = {column.name for column in table.columns}
    missing = [name for name in names if name not in known]
    if missing:
        raise SinkError(
            sink,
            f"{role} {', '.join(map(repr, missing))} {'is' if len(missing) == 1 else 'are'} not "
            f"a column of {table.display} (its columns: {', '.join(sorted(known))}): add the "
            f"column to the table or fix the sink's {role}",
        )


def require_unique_key(table: Table, key_columns: Sequence[str], sink: str) -> None:
    """`SinkError` unless a primary key or unique index of `table` has exactly `key_columns`,
    as an upsert's ON CONFLICT needs."""
    if not key_columns:
        raise SinkError(
            sink,
            f"mode='upsert' needs key_columns (the columns identifying a row of {table.display}): "
            "give key_columns=[...], or use mode='append'",
        )
    if frozenset(key_columns) not in table.unique_keys:
        columns = ", ".join(key_columns)
        raise SinkError(
            sink,
            f"mode='upsert' needs a primary key or unique index on exactly ({columns}) of "
            f"{table.display}, and it has none: create one, e.g. CREATE UNIQUE INDEX ON "
            f"{table.display} ({columns})",
        )
