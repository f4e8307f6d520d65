"""What a source is: the contract between the runtime and a place records come from outside Kafka.

A user gives a `Source` (configuration: what to read, how) to `topology.source(source,
topic=...)`, which returns the `Stream` of that topic. Each source is one task of its own
(assigned like the others, moved on failover), so it runs on exactly one worker at a time. The
runtime drives a `SourceReader` on that worker:

1. `open(position)` with the position the source last recorded (None: it never recorded one),
   as kept in the application's compacted positions topic (`<app>-source-positions`, keyed by
   the source's name). The reader resumes right after it.
2. `poll(max_records)` repeatedly: up to `max_records` new records, in order, each a
   `SourceItem` whose `position` is where reading resumes after it. An empty list: nothing new
   now (the runtime asks again later; a file source looks for new files, a database source
   queries again).
3. The runtime produces each item's value (and key: the source's `key(value)`) to the topic with
   the item's headers and, with the last item's position, records the position: under
   exactly-once in the same transaction as the records (so a crash neither loses nor repeats a
   record), under at-least-once after the records are acknowledged.
4. `close()` when the task goes away.

Positions are JSON-serialisable dicts (the positions topic stores them as JSON), e.g. for files
`{"files": {"<path>": [size, mtime_ns, offset, line]}, "reading": [...]}` and for a database
`{"timestamp": ..., "id": ...}`. A reader may share parts of one item's position with the next
(they are never changed once handed out): the runtime must not mutate them either.

Two things a reader hands the runtime besides records:

- An item whose value is a `BadLine`: input that could not be parsed (bad JSON, a CSV row with
  the wrong number of fields, bad encoding). The runtime sends it where the source's error
  handling says (the dead-letter topic by default), with its file and line; its position still
  counts, so it is not read again.
- `SourceUnavailableError` from `poll`: the place the source reads is unreachable for now (a
  database restarting). Nothing was read and the reader's position did not move; the runtime
  logs it, waits (`poll_interval_ms`, backing off if it repeats) and polls the same reader again,
  which reconnects. Any other `SourceError` is permanent until a person acts on its message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from processor.errors import ProcessorError, TransientError

__all__ = [
    "BadLine",
    "Position",
    "Source",
    "SourceError",
    "SourceItem",
    "SourceReader",
    "SourceUnavailableError",
]

Position = dict[str, Any]


class SourceError(ProcessorError):
    """A source cannot read (names the source and what to do)."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"source {source!r}: {problem}")


class SourceUnavailableError(SourceError, TransientError):
    """The place a source reads cannot be reached now; poll again later (the reader reconnects).
    Nothing was read and the reader's position did not move."""


@dataclass(frozen=True)
class BadLine:
    """The value of a `SourceItem` for input that could not be parsed: `raw` is the line's bytes
    as read (without its line ending), `line` its 1-based number in `path`."""

    path: str
    line: int
    raw: bytes
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


@dataclass(frozen=True)
class SourceItem:
    """One record read from outside: its value (a dict for CSV rows, the parsed object for JSON
    lines, a dict for a database row, a `BadLine` for input that could not be parsed), headers
    naming its origin (`processor.source.file` and `processor.source.line` for files,
    `processor.source.table` or `processor.source.query` and `processor.source.cursor` for a
    database), and the position after it."""

    value: Any
    headers: Sequence[tuple[str, bytes]]
    position: Position
    timestamp: int | None = None
    """Milliseconds since the epoch; None: when it is produced."""


class SourceReader(ABC):
    @abstractmethod
    def open(self, position: Position | None) -> None:
        """Prepare to read right after `position` (None: from the beginning)."""

    @abstractmethod
    def poll(self, max_records: int) -> list[SourceItem]:
        """Up to `max_records` new records, in order; [] when nothing is new now."""

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""


class Source(ABC):
    """A place records come from, given to `topology.source(...)`."""

    name: str = ""
    """Names the source's task, its position and its errors; set by `topology.source(name=)`
    (default: the topic)."""

    key: Callable[[Any], Any] | None = None
    """The record key from the value (None: records have no key)."""

    poll_interval_ms: int = 1_000
    """How long to wait before asking again when `poll` returned nothing."""

    @abstractmethod
    def reader(self) -> SourceReader:
        """A new reader (one per source task; called again when the task moves back)."""

    def describe(self) -> str:
        """One line for `describe()` and the status page: what and where (no secrets)."""
        return type(self).__name__
