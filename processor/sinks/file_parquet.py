"""Parquet files for `FileSink`: dict values as rows of typed columns.

A writer's columns are fixed by the first record it prepares: its keys, in order, and the arrow
type of each value (int → int64, float → float64, str → string, bool → bool). A column whose
first value is None has no type yet; the first later non-null value gives it one. Later
records: a missing key is written as null; an unknown key, a value of another type, or a value
of a type these columns do not hold (list, dict, bytes, ...) raises `SinkRecordError` naming
the column and the offset. An int is accepted in a float64 column (converted, as JSON writers
often drop the ".0" of a whole float); a float is refused in an int64 column (it would lose its
fraction), as is a bool in a numeric column.

Threads: the encoder (main thread) keeps its columns as an immutable `Columns` snapshot and
replaces the snapshot when a column gets its type; each payload carries the snapshot it was
checked against. The writer thread reads only the snapshots in the payloads, and starts a new
file when a payload's snapshot is not the open file's (a Parquet file has one schema): at most
one extra file per column that starts out null.

Rows are buffered and written as row groups of `PARQUET_ROW_GROUP_ROWS` rows (and the rest
when the file is published) by `pyarrow.parquet.ParquetWriter`, with its default (Snappy)
compression.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from processor.sinks.base import SinkRecord, SinkRecordError
from processor.sinks.file_formats import (
    FileLostError,
    OpenFile,
    create_exclusively,
    where,
)

__all__ = ["PARQUET_ROW_GROUP_ROWS", "Columns", "ParquetEncoder", "columns_of", "open_parquet_file"]

# Rows of a Parquet file kept in memory before they are written as one row group: large
# enough for good compression and few row groups, small enough to bound memory per task.
PARQUET_ROW_GROUP_ROWS = 1 << 16
# Guessed on-disk bytes per value until a first row group says how well the data compresses.
_GUESSED_BYTES_PER_VALUE = 8

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_()}
_ARROW_NAMES = {"int": "int64", "float": "float64", "str": "string", "bool": "bool"}
_KINDS: dict[type, str] = {int: "int", float: "float", str: "str", bool: "bool"}


@dataclass(frozen=True)
class Columns:
    """A snapshot of a Parquet writer's columns: names (fixed by its first record) and their
    kinds (None: only nulls seen so far); never changed once made."""

    names: tuple[str, ...]
    kinds: tuple[str | None, ...]
    fixed_at: str
    index: dict[str, int] = field(compare=False, repr=False)

    @classmethod
    def of(cls, names: tuple[str, ...], kinds: tuple[str | None, ...], at: str) -> Columns:
        return cls(names, kinds, at, {name: i for i, name in enumerate(names)})

    def with_kind(self, position: int, kind: str) -> Columns:
        kinds = list(self.kinds)
        kinds[position] = kind
        return Columns(self.names, tuple(kinds), self.fixed_at, self.index)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [
                (name, _ARROW_TYPES[kind] if kind else pa.null())
                for name, kind in zip(self.names, self.kinds, strict=True)
            ]
        )


def _kind_of(value: Any) -> str | None:
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    for kind_type in (bool, int, float, str):  # subclasses (an IntEnum, a str Enum)
        if isinstance(value, kind_type):
            return _KINDS[kind_type]
    return None


class ParquetEncoder:
    """A dict value as a row of the writer's columns (see the module docstring)."""

    def __init__(self, sink: str) -> None:
        self._sink = sink
        self._columns: Columns | None = None

    def encode(self, record: SinkRecord) -> tuple[Columns, tuple[Any, ...]]:
        value = record.value
        if not isinstance(value, dict):
            raise self._error(
                record,
                f"the value is a {type(value).__name__}, but Parquet rows are made from dict "
                "values (column name → value); map the value to a dict before the sink",
            )
        columns = self._columns
        if columns is None:
            columns = self._columns = self._first_columns(record, value)
        row: list[Any] = [None] * len(columns.names)
        for key, item in value.items():
            position = columns.index.get(key)
            if position is None:
                raise self._error(
                    record,
                    f"column {key!r} is not among the file's columns "
                    f"{list(columns.names)} (fixed by the first record, at {columns.fixed_at}); "
                    "give every record the same keys, or a sink of its own",
                )
            if item is None:
                continue
            kind = _kind_of(item)
            expected = columns.kinds[position]
            if kind != expected:
                if expected is None and kind is not None:
                    columns = self._columns = columns.with_kind(position, kind)
                elif expected == "float" and kind == "int":
                    item = float(item)
                    kind = "float"
                else:
                    raise self._error(record, self._mismatch(columns, key, item, expected))
            if kind == "int" and not _INT64_MIN <= item <= _INT64_MAX:
                raise self._error(record, f"column {key!r} holds {item}, beyond int64")
            row[position] = item
        return columns, tuple(row)

    def _first_columns(self, record: SinkRecord, value: dict[Any, Any]) -> Columns:
        kinds: list[str | None] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise self._error(record, f"key {key!r} is not a str, so not a column name")
            kind = _kind_of(item)
            if kind is None and item is not None:
                raise self._error(record, self._unsupported(key, item))
            kinds.append(kind)
        return Columns.of(tuple(value), tuple(kinds), where(record))

    def _mismatch(self, columns: Columns, key: str, item: Any, expected: str | None) -> str:
        if _kind_of(item) is None:
            return self._unsupported(key, item)
        return (
            f"column {key!r} holds a {type(item).__name__} ({item!r}), but the column is "
            f"{_ARROW_NAMES[expected or 'str']} (its type was fixed by the first value, at or "
            f"after {columns.fixed_at}); convert the value before the sink"
        )

    @staticmethod
    def _unsupported(key: str, item: Any) -> str:
        return (
            f"column {key!r} holds a {type(item).__name__}, which a Parquet column here cannot "
            "hold (int, float, str, bool or None); flatten or convert it before the sink"
        )

    def _error(self, record: SinkRecord, problem: str) -> SinkRecordError:
        return SinkRecordError(self._sink, f"record at {where(record)}: {problem}")


class _ParquetFile:
    """Rows buffered, then written as row groups to a native arrow file (no Python file
    object, so nothing is left for the garbage collector to flush)."""

    def __init__(self, path: Path, columns: Columns) -> None:
        self._path = path
        self._schema = columns.arrow_schema()
        os.close(create_exclusively(path))  # the name is ours: then opened by arrow
        self._file = pa.OSFile(str(path), mode="wb")
        self._writer: pq.ParquetWriter | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._rows_written = 0

    def append(self, payloads: Sequence[Any]) -> None:
        self._rows.extend([values for _, values in payloads])
        if len(self._rows) >= PARQUET_ROW_GROUP_ROWS:
            self._write_row_group()

    def size(self) -> int:
        written: int = self._file.tell()
        if self._rows_written:
            per_row = written / self._rows_written
        else:
            per_row = _GUESSED_BYTES_PER_VALUE * max(1, len(self._schema))
        return written + int(per_row * len(self._rows))

    def finish(self) -> None:
        self._write_row_group()
        try:
            self._parquet_writer().close()
            self._file.flush()
            os.fsync(self._file.fileno())  # not retried when it fails: see fsync_and_close
            self._file.close()
        except Exception as error:
            raise FileLostError(f"finishing the Parquet file failed: {error}") from error

    def discard(self) -> None:
        # Closed here, or the writer's finalizer would write a footer to a closed file.
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(Exception):
            self._file.close()
        self._path.unlink(missing_ok=True)

    def _parquet_writer(self) -> pq.ParquetWriter:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file, self._schema)
        return self._writer

    def _write_row_group(self) -> None:
        if not self._rows:
            return
        try:
            columns = list(zip(*self._rows, strict=True))
            arrays = [
                pa.array(column, type=column_type)
                for column, column_type in zip(columns, self._schema.types, strict=True)
            ]
            table = pa.Table.from_arrays(arrays, schema=self._schema)
            self._parquet_writer().write_table(table, row_group_size=len(self._rows))
        except Exception as error:
            raise FileLostError(f"writing a Parquet row group failed: {error}") from error
        self._rows_written += len(self._rows)
        self._rows = []


def columns_of(payload: Any) -> Columns:
    """The columns snapshot a payload was checked against."""
    columns: Columns = payload[0]
    return columns


def open_parquet_file(path: Path, payload: Any) -> OpenFile:
    """A new temporary Parquet file at `path` with the columns of `payload`."""
    return _ParquetFile(path, columns_of(payload))
