"""From a record to a row of the sink's table: `RowMapper.row` runs on the main thread, once per
record, and either returns what `write` copies as is or raises `SinkRecordError` naming the
column, what it expects and what the record gave.

A record's value is a dict of column name to value. It is the whole row:

- a column it lacks is written as its default (a column with a DEFAULT or an identity), or
  NULL (a nullable column without one); a NOT NULL column without a default is required. In
  an upsert, an updated row gets its defaults again for the columns the record lacks, so
  applying records one after another and applying only the last of each key agree;
- key columns (and `include_key`'s column) are required and never NULL;
- a key the table has no column for is refused (as Kafka Connect's JDBC sink does: a typo in
  a field name must not silently drop data) unless the sink says `ignore_unknown_keys=True`.

A prepared row is `(shape, values)`: `shape` lists (by index into `Table.columns`) the columns
`values` fills. Records that give every column share one shape object, the common case; the
writer copies rows grouped by shape, each group with its column list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from processor.sinks.base import SinkRecordError
from processor.sinks.pg_catalog import Column, Table
from processor.sinks.pg_types import TypeMismatch

__all__ = ["PreparedRow", "RowMapper", "Shape"]

Shape = tuple[int, ...]
PreparedRow = tuple[Shape, tuple[Any, ...]]

_MISSING = object()


class RowMapper:
    """Checks and orders records' values for `table` (see the module docstring)."""

    def __init__(
        self,
        table: Table,
        *,
        sink: str,
        key_columns: Sequence[str] = (),
        include_key: str | None = None,
        ignore_unknown_keys: bool = False,
    ) -> None:
        self.table = table
        self._sink = sink
        self._include_key = include_key
        self._ignore_unknown = ignore_unknown_keys
        required = {*key_columns, *([include_key] if include_key else [])}
        self._specs = [
            (
                index,
                column.name,
                column.check,
                column.not_null or column.name in required,
                column.has_default and column.name not in required,
            )
            for index, column in enumerate(table.columns)
        ]
        self.full_shape: Shape = tuple(range(len(table.columns)))
        self._shapes: dict[Shape, Shape] = {self.full_shape: self.full_shape}

    def row(self, key: Any, value: Any) -> PreparedRow:
        """The prepared row of a record with `key` and `value`; `SinkRecordError` if it has none."""
        if not isinstance(value, dict):
            raise SinkRecordError(
                self._sink,
                f"a row of {self.table.display} comes from a dict value, got "
                f"{type(value).__name__}: map the stream's values to dicts of column values",
            )
        values: list[Any] = []
        absent: list[int] | None = None
        found = 0
        for index, name, check, required, defaulted in self._specs:
            if name == self._include_key:
                item = key
            else:
                item = value.get(name, _MISSING)
                if item is _MISSING:
                    if defaulted:
                        absent = [*(absent or ()), index]
                        continue
                    if required:
                        raise self._missing(name, value)
                    item = None
                else:
                    found += 1
            if item is None:
                if required:
                    raise self._null(name)
            elif check is not None:
                try:
                    item = check(item)
                except TypeMismatch as mismatch:
                    raise self._mistyped(index, item, mismatch) from None
            values.append(item)
        if found != len(value) and not self._ignore_unknown:
            raise self._unknown(value)
        return self._shape(absent), tuple(values)

    def columns(self, shape: Shape) -> list[Column]:
        return [self.table.columns[index] for index in shape]

    def _shape(self, absent: list[int] | None) -> Shape:
        if absent is None:
            return self.full_shape
        shape = tuple(index for index in self.full_shape if index not in absent)
        return self._shapes.setdefault(shape, shape)

    # --- refusals

    def _missing(self, name: str, value: dict[Any, Any]) -> SinkRecordError:
        keys = ", ".join(map(repr, list(value)[:20]))
        return SinkRecordError(
            self._sink,
            f"column {name!r} of {self.table.display} is required (NOT NULL without a default, "
            f"or a key column) and the value has no key {name!r} (its keys: {keys})",
        )

    def _null(self, name: str) -> SinkRecordError:
        source = "the record's Kafka key" if name == self._include_key else "the value"
        return SinkRecordError(
            self._sink,
            f"column {name!r} of {self.table.display} cannot be NULL (NOT NULL, or a key "
            f"column) and {source} gives None for it",
        )

    def _mistyped(self, index: int, item: Any, mismatch: TypeMismatch) -> SinkRecordError:
        column = self.table.columns[index]
        detail = f": {mismatch.detail}" if mismatch.detail else ""
        return SinkRecordError(
            self._sink,
            f"column {column.name!r} of {self.table.display} is {column.type_name} and takes "
            f"{mismatch.expected}; the record gives {type(item).__name__}{detail}",
        )

    def _unknown(self, value: dict[Any, Any]) -> SinkRecordError:
        known = {column.name for column in self.table.columns} - {self._include_key}
        unknown = [key for key in value if key not in known]
        return SinkRecordError(
            self._sink,
            f"{self.table.display} has no column for the value's "
            f"{'key' if len(unknown) == 1 else 'keys'} {', '.join(map(repr, unknown[:20]))}: "
            "add the column, drop the key from the value, or give the sink "
            "ignore_unknown_keys=True",
        )
