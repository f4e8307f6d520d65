"""Whatever batches, rolls, crashes (a writer dropped, or dying while it publishes) and reopenings
happen, the published files read in name order hold every offset exactly once, from the first
up to the durable offset, with the right values: the runtime resends from the offset `open()`
returns, as it does after a failover."""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from processor.sinks import files as files_module
from processor.sinks.base import SinkBatch
from processor.sinks.files import FileSinkWriter
from tests.unit.sinks.file_sink_helpers import (
    FakeClock,
    make_sink,
    offsets_of,
    published,
    read_back,
    record,
    task,
    temporary,
)

HOUR_MS = 3_600_000
ROLL_MS = 1_000


class Crash(Exception):
    """The process dies here."""


def value(offset: int) -> dict[str, Any]:
    # "half" is null in the first record, so Parquet learns its type later.
    return {"o": offset, "s": "x" * (offset % 7), "half": offset / 2 if offset % 5 else None}


@dataclass(frozen=True)
class Case:
    fmt: str
    path_by: str | None
    roll_bytes: int
    skipped: frozenset[int]
    ops: list[tuple[Any, ...]]


ops = st.one_of(
    st.tuples(st.just("batch"), st.integers(1, 40)),
    st.tuples(st.just("tick"), st.integers(0, 2 * ROLL_MS)),
    st.tuples(st.just("crash")),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("crash publishing"), st.sampled_from(["before link", "after link"])),
    st.tuples(st.just("flaky batch"), st.integers(1, 40), st.sampled_from(["link", "sync"])),
)
cases = st.builds(
    Case,
    fmt=st.sampled_from(["jsonl", "parquet"]),
    path_by=st.sampled_from([None, "date"]),
    roll_bytes=st.integers(100, 3_000),
    skipped=st.frozensets(st.integers(0, 400), max_size=40),
    ops=st.lists(ops, max_size=25),
)


@contextmanager
def fail_once(step: str) -> Iterator[None]:
    """The first link (or directory sync) fails with an I/O error; later ones work."""
    target, name = (
        (files_module.os, "link") if step == "link" else (files_module, "fsync_directory")
    )
    real = getattr(target, name)
    failures = [OSError(errno.EIO, "injected I/O error")]

    def flaky(*args: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args)

    with mock.patch.object(target, name, flaky):
        yield


@contextmanager
def crash_at(step: str) -> Iterator[None]:
    """Die just before the file is linked under its final name, or just after."""
    if step == "before link":
        with mock.patch.object(files_module.os, "link", side_effect=Crash):
            yield
        return
    with mock.patch.object(files_module, "fsync_directory", side_effect=Crash):
        yield


class Runtime:
    """What the runtime does with a sink task: batches from its position, durable offsets
    remembered, a new writer after a crash resending from where `open()` says."""

    def __init__(self, case: Case, directory: Path) -> None:
        self.case = case
        self.clock = FakeClock()
        self.sink = make_sink(
            directory,
            case.fmt,
            roll_bytes=case.roll_bytes,
            roll_ms=ROLL_MS,
            path_by=case.path_by,
            clock=self.clock,
        )
        self.durable: int | None = None
        self.writer, self.position = self.start()

    def start(self) -> tuple[FileSinkWriter, int]:
        writer = self.sink.writer(task())
        resumed = writer.open()
        # Nothing durable is ever lost: a new writer resumes at or after what was returned.
        assert resumed == self.durable or (resumed or 0) > (self.durable or 0)
        self.durable = resumed
        return writer, resumed or 0

    def took(self, durable: int | None) -> None:
        if durable is not None:
            assert durable > (self.durable or 0)
            self.durable = durable

    def batch(self, count: int, flaky: str | None = None) -> None:
        first = self.position
        records = [
            record(o, value(o), timestamp=o * HOUR_MS)
            for o in range(first, first + count)
            if o not in self.case.skipped
        ]
        batch = SinkBatch([self.writer.prepare(r) for r in records], first, first + count)
        if flaky is None:
            self.took(self.writer.write(batch))
        else:
            with fail_once(flaky):
                try:
                    self.took(self.writer.write(batch))
                except OSError:
                    self.took(self.writer.write(batch))  # retried, the batch unchanged
        self.position = first + count

    def run(self, op: tuple[Any, ...]) -> None:
        if op[0] == "batch":
            self.batch(op[1])
        elif op[0] == "flaky batch":
            self.batch(op[1], flaky=op[2])
        elif op[0] == "tick":
            self.clock.now_ms += op[1]
            self.took(self.writer.roll(self.clock.now_ms))
        elif op[0] == "reopen":
            self.writer.close()
            self.writer, self.position = self.start()
        elif op[0] == "crash":
            self.writer, self.position = self.start()  # the old writer is dropped
        else:
            with crash_at(op[1]), suppress(Crash):
                self.writer.roll(self.clock.now_ms + ROLL_MS)
            self.writer, self.position = self.start()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases)
def test_published_files_hold_every_offset_once_up_to_the_durable_offset(case: Case) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        runtime = Runtime(case, directory)
        for op in case.ops:
            runtime.run(op)
        runtime.writer, _ = runtime.start()  # a last failover: its open() cleans up
        durable = runtime.durable or 0

        files = sorted(published(directory), key=offsets_of)
        note(f"files: {[f.relative_to(directory) for f in files]}")
        ranges = [offsets_of(f) for f in files]
        assert [first for first, _ in ranges] == [0, *(next_ for _, next_ in ranges)][: len(ranges)]
        assert all(first < next_ for first, next_ in ranges)
        assert (ranges[-1][1] if ranges else 0) == durable
        rows = [row for f in files for row in read_back(f)]
        expected = [value(o) for o in range(durable) if o not in case.skipped]
        assert [row["o"] for row in rows] == [row["o"] for row in expected]
        assert rows == expected
        assert temporary(directory) == []
        if case.path_by == "date":  # a file never spans two UTC days
            for f in files:
                days = {row["o"] * HOUR_MS // 86_400_000 for row in read_back(f)}
                assert len(days) == 1
