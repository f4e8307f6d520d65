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
`{"files": {"<path>": {"size": ..., "mtime_ns": ..., "line": ...}}}` and for a database
`{"timestamp": ..., "id": ...}`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from processor.errors import ProcessorError

__all__ = ["Position", "Source", "SourceError", "SourceItem", "SourceReader"]

Position = dict[str, Any]


class SourceError(ProcessorError):
    """A source cannot read (names the source and what to do)."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"source {source!r}: {problem}")


@dataclass(frozen=True)
class SourceItem:
    """One record read from outside: its value (a dict for CSV rows, the parsed object for JSON
    lines), headers naming its origin (`processor.source.origin`: e.g. `orders-1.csv:17`), and
    the position after it."""

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
