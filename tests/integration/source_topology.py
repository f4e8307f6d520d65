"""The topology the source integration test runs in worker processes: the lines of a file (a
source of the test's own, slowed down so that a worker can be killed mid-file) fed to a topic,
then copied to the sink. Names come from the environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

from processor import Topology, serdes
from processor.sources.base import Position, Source, SourceItem, SourceReader

LINES_FILE = os.environ.get("TEST_LINES_FILE", "lines.txt")
RAW = os.environ.get("TEST_RAW_TOPIC", "test-raw")
SINK = os.environ.get("TEST_SINK_TOPIC", "test-copied")
LINES_PER_POLL = 20
POLL_SLEEP_S = 0.05


class LinesSource(Source):
    """Each line of `path` (read whole at open), position: the next line's index."""

    poll_interval_ms = 100

    def __init__(self, path: str) -> None:
        self.path = path

    def reader(self) -> SourceReader:
        return _LinesReader(self.path)


class _LinesReader(SourceReader):
    def __init__(self, path: str) -> None:
        self._path = path
        self._lines: list[str] = []
        self._next = 0

    def open(self, position: Position | None) -> None:
        self._lines = Path(self._path).read_text().splitlines()
        self._next = 0 if position is None else int(position["next"])

    def poll(self, max_records: int) -> list[SourceItem]:
        time.sleep(POLL_SLEEP_S)
        end = min(len(self._lines), self._next + min(max_records, LINES_PER_POLL))
        items = [
            SourceItem(self._lines[i], [("line", str(i + 1).encode())], {"next": i + 1})
            for i in range(self._next, end)
        ]
        self._next = end
        return items

    def close(self) -> None:
        pass


source = LinesSource(LINES_FILE)
source.key = str
copying = Topology("copying")
copying.source(source, topic=RAW, partitions=3, value_serde=serdes.StringSerde(), name="lines").to(
    SINK
)
