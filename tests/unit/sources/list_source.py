"""A source for tests: the values of a list, one item each, with the list index as position."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from processor.sources.base import BadLine, Position, Source, SourceItem, SourceReader


class ListSource(Source):
    """Reads `values`; a `BadLine` among them is input the reader could not parse."""

    poll_interval_ms = 50

    def __init__(self, values: Sequence[Any], *, per_poll: int = 1000, sleep_s: float = 0.0):
        self.values = list(values)
        self.per_poll = per_poll
        self.sleep_s = sleep_s

    def reader(self) -> SourceReader:
        return _ListReader(self)


class _ListReader(SourceReader):
    def __init__(self, source: ListSource) -> None:
        self._source = source
        self._next = 0

    def open(self, position: Position | None) -> None:
        self._next = 0 if position is None else int(position["next"])

    def poll(self, max_records: int) -> list[SourceItem]:
        time.sleep(self._source.sleep_s)
        values = self._source.values
        end = min(len(values), self._next + min(max_records, self._source.per_poll))
        items = [
            SourceItem(values[i], [("processor.source.line", str(i + 1).encode())], {"next": i + 1})
            for i in range(self._next, end)
        ]
        self._next = end
        return items

    def close(self) -> None:
        pass


def bad_line(line: int, raw: bytes) -> BadLine:
    return BadLine("orders.jsonl", line, raw, "not JSON")
