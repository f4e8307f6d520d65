"""Which Python values a PostgreSQL column accepts, checked once per record on the main thread.

A value that passes its column's check is one the database will store: a value the database
would refuse later (an int beyond `integer`, a string longer than `varchar(10)`, a NUL byte
in text) would fail the whole batch, again at every retry, so it is refused here, one record
at a time, where the processing error handler can skip it or send it to the dead letters.

| column type                         | accepted Python values                                  |
|-------------------------------------|---------------------------------------------------------|
| smallint, integer, bigint           | int (within the type's range; not bool)                 |
| real, double precision, numeric     | int, float, Decimal (not bool)                          |
| text, varchar(n), char(n), name     | str (at most n characters, no NUL)                      |
| boolean                             | bool                                                    |
| timestamp, timestamptz              | datetime, ISO 8601 str, int (epoch milliseconds, UTC)   |
| date                                | date, ISO 8601 str, int (epoch milliseconds, UTC)       |
| json, jsonb                         | dict, list                                              |
| uuid                                | UUID, str (a valid UUID)                                |
| bytea                               | bytes                                                   |
| anything else                       | any value, passed through: the database checks it       |

`timestamp` (without time zone) stores UTC: an aware datetime (or an ISO string with an offset)
is converted to UTC first, so one instant is always written the same way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["Check", "TypeMismatch", "check_for"]

Check = Callable[[Any], Any]
"""A column's check: the value to write for a (non-null) Python value, or `TypeMismatch`."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT_RANGES = {"int2": 16, "int4": 32, "int8": 64}


class TypeMismatch(Exception):
    """A value does not fit its column; `expected` says what would."""

    def __init__(self, expected: str, detail: str = "") -> None:
        self.expected = expected
        self.detail = detail
        super().__init__(expected)


def check_for(type_name: str, type_modifier: int) -> tuple[Check | None, str]:
    """The check for a column of type `type_name` (pg_type.typname; a domain's base type) with
    modifier `type_modifier` (pg_attribute.atttypmod), and what it expects in words; None when
    any value passes."""
    if type_name in _INT_RANGES:
        return _integer(_INT_RANGES[type_name]), "int"
    maker = _CHECKS.get(type_name)
    if maker is not None:
        return maker(type_modifier)
    return None, "any value"


def _integer(bits: int) -> Check:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def check(value: Any) -> Any:
        if type(value) is int and low <= value <= high:
            return value
        if type(value) is int:
            raise TypeMismatch(f"int from {low} to {high}", f"{value} is out of range")
        raise TypeMismatch("int")

    return check


def _number(type_modifier: int) -> tuple[Check, str]:
    def check(value: Any) -> Any:
        if type(value) in (int, float) or isinstance(value, Decimal):
            return value
        raise TypeMismatch("int, float or Decimal")

    return check, "int, float or Decimal"


def _text(type_modifier: int) -> tuple[Check, str]:
    # varchar(n) and char(n) store n + 4 in atttypmod; -1 means no limit.
    limit = type_modifier - 4 if type_modifier > 4 else None
    expected = f"str of at most {limit} characters" if limit else "str"

    def check(value: Any) -> Any:
        if type(value) is not str:
            raise TypeMismatch(expected)
        if limit is not None and len(value) > limit:
            raise TypeMismatch(expected, f"it has {len(value)} characters")
        if "\x00" in value:
            raise TypeMismatch("str without NUL characters", "it contains a NUL character")
        return value

    return check, expected


def _boolean(type_modifier: int) -> tuple[Check, str]:
    def check(value: Any) -> Any:
        if type(value) is bool:
            return value
        raise TypeMismatch("bool")

    return check, "bool"


def _timestamp(aware: bool) -> Callable[[int], tuple[Check, str]]:
    expected = "datetime, ISO 8601 str or int (epoch milliseconds)"

    def make(type_modifier: int) -> tuple[Check, str]:
        def check(value: Any) -> Any:
            if type(value) is str:
                text = value
                try:
                    value = datetime.fromisoformat(value)
                except ValueError:
                    raise TypeMismatch(expected, f"{value[:40]!r} is not ISO 8601") from None
                if aware and value.tzinfo is not None:
                    # Checked; PostgreSQL reads ISO 8601 with an offset as it is, and COPY
                    # then sends the text rather than formatting the datetime back into it.
                    return text
            if type(value) is int:
                value = _EPOCH + timedelta(milliseconds=value)
            if not isinstance(value, datetime):
                raise TypeMismatch(expected)
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC) if aware else value
            return value if aware else value.astimezone(UTC).replace(tzinfo=None)

        return check, expected

    return make


def _date(type_modifier: int) -> tuple[Check, str]:
    expected = "date, ISO 8601 str or int (epoch milliseconds)"

    def check(value: Any) -> Any:
        if type(value) is date:
            return value
        if type(value) is str:
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise TypeMismatch(expected, f"{value[:40]!r} is not an ISO 8601 date") from None
        if type(value) is int:
            return (_EPOCH + timedelta(milliseconds=value)).date()
        raise TypeMismatch(expected)

    return check, expected


def _json(type_modifier: int) -> tuple[Check, str]:
    def check(value: Any) -> Any:
        if type(value) is dict or type(value) is list:
            try:
                return json.dumps(value, separators=(",", ":"), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise TypeMismatch("dict or list of JSON values", str(exc)) from None
        raise TypeMismatch("dict or list")

    return check, "dict or list"


def _uuid(type_modifier: int) -> tuple[Check, str]:
    def check(value: Any) -> Any:
        if type(value) is uuid.UUID:
            return value
        if type(value) is str:
            try:
                return uuid.UUID(value)
            except ValueError:
                raise TypeMismatch("UUID or str", f"{value[:40]!r} is not a UUID") from None
        raise TypeMismatch("UUID or str")

    return check, "UUID or str"


def _bytea(type_modifier: int) -> tuple[Check, str]:
    def check(value: Any) -> Any:
        if type(value) is bytes:
            return value
        raise TypeMismatch("bytes")

    return check, "bytes"


_CHECKS: dict[str, Callable[[int], tuple[Check, str]]] = {
    "float4": _number,
    "float8": _number,
    "numeric": _number,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "name": _text,
    "bool": _boolean,
    "timestamp": _timestamp(aware=False),
    "timestamptz": _timestamp(aware=True),
    "date": _date,
    "json": _json,
    "jsonb": _json,
    "uuid": _uuid,
    "bytea": _bytea,
}
