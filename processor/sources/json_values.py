"""Database values as JSON-friendly values, so a row can be a record's value under `JsonSerde`.

| PostgreSQL                      | Python from psycopg   | in the record                      |
|---------------------------------|-----------------------|------------------------------------|
| timestamp, timestamptz          | datetime              | ISO 8601 string (with its offset   |
|                                 |                       | for timestamptz, in UTC)           |
| date, time                      | date, time            | ISO 8601 string                    |
| interval                        | timedelta             | seconds (a number)                 |
| numeric                         | Decimal               | string: exact (a float would round |
|                                 |                       | money), `Decimal(value)` reads it  |
| bytea                           | bytes                 | base64 string                      |
| uuid                            | UUID                  | string                             |
| arrays, json, jsonb             | list, dict            | the same, converted inside         |
| text, integers, floats, boolean | str, int, float, bool | unchanged                          |
| anything else (inet, ranges...) | ...                   | `str(value)`                       |
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

__all__ = ["json_row", "json_value"]


def _iso(value: date | time) -> str:
    return value.isoformat()


def _base64(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


def _seconds(value: timedelta) -> float:
    return value.total_seconds()


def _items(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [json_value(v) for v in value]


def _mapping(value: dict[Any, Any]) -> dict[str, Any]:
    return {str(k): json_value(v) for k, v in value.items()}


def _same(value: Any) -> Any:
    return value


_CONVERT: dict[type, Callable[[Any], Any]] = {
    str: _same,
    int: _same,
    float: _same,
    bool: _same,
    type(None): _same,
    datetime: _iso,
    date: _iso,
    time: _iso,
    timedelta: _seconds,
    Decimal: str,
    UUID: str,
    bytes: _base64,
    bytearray: _base64,
    memoryview: _base64,
    list: _items,
    tuple: _items,
    dict: _mapping,
}


# Values of these types are kept as they are (checked first: most columns are of them).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def json_value(value: Any) -> Any:
    """`value` as something `json.dumps` writes without help (see the module's table)."""
    convert = _CONVERT.get(type(value), str)
    return convert(value)


def json_row(columns: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    """A row as a dict of column name to `json_value` (a hot loop: one call per row)."""
    plain, convert = _PLAIN, _CONVERT.get
    return {
        c: v if type(v) in plain else convert(type(v), str)(v)
        for c, v in zip(columns, row, strict=True)
    }
