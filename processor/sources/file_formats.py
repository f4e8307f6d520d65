"""Turning one line (one record) of a file into a value: CSV rows and JSON lines.

A format parses decoded text; a line it cannot parse gives a `LineProblem` (what is wrong, for
the `BadLine` the reader makes of it) instead of raising, so one bad line never stops a file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["CsvFormat", "FileFormat", "JsonLinesFormat", "LineProblem", "format_named"]

FormatName = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class LineProblem:
    problem: str


class FileFormat(Protocol):
    has_header: bool
    """The first non-blank line names the columns (read, not produced)."""

    def continues(self, record: bytes) -> bool:
        """The record goes on on the next line (a quoted CSV field is still open)."""
        ...

    def set_header(self, text: str | LineProblem, line: int) -> None: ...

    def parse(self, text: str) -> Any | LineProblem: ...


class JsonLinesFormat:
    """One JSON value per line; the value is the parsed object."""

    has_header = False

    def continues(self, record: bytes) -> bool:
        return False

    def set_header(self, text: str | LineProblem, line: int) -> None:
        raise AssertionError("JSON lines have no header")

    def parse(self, text: str) -> Any | LineProblem:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            return LineProblem(f"not valid JSON: {e.msg} at column {e.colno}")


class CsvFormat:
    """Comma-separated values with a header line; each row is a dict of the header's columns to
    strings (RFC 4180: double quotes around fields, `""` inside them, newlines in quoted fields).
    A file whose header is unusable (empty or repeated column names) gives a problem for every
    row, naming the header's line."""

    has_header = True

    def __init__(self) -> None:
        self._columns: list[str] = []
        self._header_problem: str | None = "the file has no header line"

    def set_header(self, text: str | LineProblem, line: int) -> None:
        parsed = text if isinstance(text, LineProblem) else self._fields(text)
        if isinstance(parsed, LineProblem):
            self._header_problem = f"the header (line {line}) cannot be read: {parsed.problem}"
            return
        repeated = sorted({c for c in parsed if parsed.count(c) > 1})
        if repeated or "" in parsed:
            what = f"repeats {', '.join(map(repr, repeated))}" if repeated else "has an empty name"
            self._header_problem = (
                f"the header (line {line}) {what}: give every column its own name"
            )
            return
        self._columns = parsed
        self._header_problem = None

    def parse(self, text: str) -> Any | LineProblem:
        if self._header_problem is not None:
            return LineProblem(self._header_problem)
        fields = self._fields(text)
        if isinstance(fields, LineProblem):
            return fields
        if len(fields) != len(self._columns):
            return LineProblem(
                f"{len(fields)} fields where the header has {len(self._columns)} "
                f"({', '.join(self._columns)})"
            )
        return dict(zip(self._columns, fields, strict=True))

    def continues(self, record: bytes) -> bool:
        return b'"' in record and _quote_open(record)

    @staticmethod
    def _fields(text: str) -> list[str] | LineProblem:
        try:
            return next(csv.reader((text,), strict=True))
        except csv.Error as e:
            return LineProblem(f"not a valid CSV row: {e}")


def _quote_open(record: bytes) -> bool:
    """Whether a quoted field is open at the end of `record`: RFC 4180, a field is quoted when
    its first character is a double quote, and `""` inside it is a quote. (Looked at bytes: the
    structural characters are ASCII, which every accepted encoding keeps.)"""
    quoted = False
    field_start = True
    i, n = 0, len(record)
    while i < n:
        c = record[i]
        if quoted:
            if c == 0x22:  # "
                if i + 1 < n and record[i + 1] == 0x22:
                    i += 1
                else:
                    quoted = False
        elif c == 0x22 and field_start:
            quoted = True
        field_start = not quoted and c == 0x2C  # ,
        i += 1
    return quoted


def format_named(name: str) -> FileFormat:
    """A fresh parser for one file (a CSV parser keeps that file's header)."""
    if name == "csv":
        return CsvFormat()
    if name == "jsonl":
        return JsonLinesFormat()
    raise ValueError(name)
