"""`FileSink`: JSON lines or Parquet files in a directory, exactly once.

Each sink task (one partition of the topic the sink reads) writes files of its own. A file is
written under a temporary name (`processor.sinks.file_names`) and published under a name that
carries the task and the offset range `[first, next)` it holds. The published names are the
sink's progress: `open()` resumes from the largest next offset among the task's published
files, so a restart reads again exactly what no published file holds.

Publishing a file, in order:

1. Write what is buffered, fsync the file and close it (a published file is complete after a
   crash).
2. List the directory: if a published file of the task ends after this file's first offset,
   another writer has taken the task over and published meanwhile: delete the file and raise
   `SinkFencedError`.
3. `os.link(temporary, final)`: fails if the final name exists (`SinkFencedError`), or if the
   temporary file is gone (a successor's `open()` deleted it as a leftover: `SinkFencedError`).
4. Delete the temporary name and fsync the directory; only then is the file's next offset
   returned as durable.

A file holds exactly the range in its name: records of consecutive batches, a file never empty,
never holding records of two UTC days (`path_by="date"`) or two Parquet schemas
(`processor.sinks.file_formats`). A crash at any step leaves either a temporary file (deleted
by the next `open()`, with a warning naming it) or a complete published file.

The zombie window. A writer that lost its task without knowing (paused, cut off) and wakes up
after its successor opened is stopped at step 2 or 3 in every interleaving but one: its check
(step 2) passes, it is suspended before its link (step 3), the successor publishes a file
starting at or before the zombie's last offset, then the zombie links. Steps 2 and 3 are a few
microseconds apart, and the filesystem has no compare-and-swap across names to make them one;
the only other cure is a lease, which trusts clocks. Should it happen, both files hold the same
records for the offsets they share (both read them from the same partition), so a reader that
takes each offset once, in name order, reads each record once. A successor is in turn fenced
(step 2) when a zombie published beyond the successor's first offset; it reopens from there.

Threads: `prepare` runs on the worker's main thread and touches only the format's encoder;
`open`, `write`, `roll` and `close` run on the writer's thread and own the rest. A `write`
that raises leaves the writer as before, so the runtime can retry it with the same batch
(offsets it already took are skipped), except when the temporary file cannot be restored (a
failed fsync, a half-written Parquet row group): the records it held are then lost to this
writer, which raises `SinkFencedError` so that the task is read again from its durable offset.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from processor.errors import ConfigError
from processor.sinks.base import (
    Sink,
    SinkBatch,
    SinkError,
    SinkFencedError,
    SinkRecord,
    SinkTask,
    SinkWriter,
)
from processor.sinks.file_formats import FileLostError, OpenFile, file_format, format_names
from processor.sinks.file_names import SinkFiles, TaskFiles, fsync_directory

__all__ = ["FileSink", "FileSinkWriter"]

logger = logging.getLogger(__name__)

_DAY_MS = 86_400_000
# Prepared items: (offset, timestamp in ms, the format's payload).
Item = tuple[int, int, Any]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class FileSink(Sink):
    """Files in `directory`, one series per sink task, published exactly once.

    - `format`: "jsonl" (one JSON line per record value) or "parquet" (dict values as rows).
    - `roll_bytes` (default 64 MiB): a file is published once it holds about this many bytes.
    - `roll_ms` (default 60 s): ...or once it has been open this long, so a restart reads again
      at most about this much of the input.
    - `path_by`: None (all files in `directory`) or "date" (a subdirectory `YYYY-MM-DD` per UTC
      day of the records' timestamps; records out of day order make more, smaller files).
    - `max_batch_records`, `max_batch_ms`, `max_buffer_bytes`: batching and the memory bound
      (see `processor.sinks.base.Sink`).
    - `clock`: milliseconds now, the clock `roll_ms` is measured with and `roll(now_ms)` is
      given in (default: the wall clock).
    """

    exactly_once = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        format: str = "jsonl",
        roll_bytes: int = 64 << 20,
        roll_ms: int = 60_000,
        path_by: str | None = None,
        max_batch_records: int = Sink.max_batch_records,
        max_batch_ms: int = Sink.max_batch_ms,
        max_buffer_bytes: int = Sink.max_buffer_bytes,
        clock: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        chosen = file_format(format)
        if chosen is None:
            raise ConfigError(
                "format", f"{format!r} is not a file format: use one of {format_names()}"
            )
        if path_by not in (None, "date"):
            raise ConfigError("path_by", f"{path_by!r} is not supported: use None or 'date'")
        for setting, value in (
            ("roll_bytes", roll_bytes),
            ("roll_ms", roll_ms),
            ("max_batch_records", max_batch_records),
            ("max_batch_ms", max_batch_ms),
            ("max_buffer_bytes", max_buffer_bytes),
        ):
            if value <= 0:
                raise ConfigError(setting, f"{value} must be positive")
        self.directory = Path(directory)
        self.format = chosen
        self.roll_bytes = roll_bytes
        self.roll_ms = roll_ms
        self.path_by = path_by
        self.max_batch_records = max_batch_records
        self.max_batch_ms = max_batch_ms
        self.max_buffer_bytes = max_buffer_bytes
        self.clock = clock

    def writer(self, task: SinkTask) -> FileSinkWriter:
        if not task.sink or "/" in task.sink or task.sink.startswith("."):
            raise SinkError(
                task.sink,
                "a file sink's name starts its files' names, so it must be set and cannot "
                "contain '/' or start with '.': pass stream.sink(..., name='orders')",
            )
        return FileSinkWriter(self, task)

    def progress(self, application_id: str, topic: str) -> SinkFiles:
        return SinkFiles(
            self.directory, self.name, topic, self.format.extension, self.path_by == "date"
        )

    def describe(self) -> str:
        by_date = ", by date" if self.path_by else ""
        return (
            f"FileSink({self.format.name} files in {self.directory}{by_date}, published every "
            f"{self.roll_bytes} bytes or {self.roll_ms} ms)"
        )


@dataclass
class _Range:
    """The offsets taken since the last publication, and the temporary file holding them."""

    first: int
    day: str | None = None
    key: object = None
    path: Path | None = None
    file: OpenFile | None = None
    opened_ms: int = 0
    records: int = 0
    finished: bool = False


@dataclass(frozen=True)
class _Linked:
    """A file linked under its final name whose directory is not yet synced."""

    temporary: Path
    folder: Path
    next_offset: int


class FileSinkWriter(SinkWriter):
    """One task's files; see the module docstring for the protocol and the threads."""

    def __init__(self, sink: FileSink, task: SinkTask) -> None:
        self._sink = sink
        self._task = task
        self._format = sink.format
        self._names = TaskFiles(
            sink.directory,
            task.sink,
            task.topic,
            task.partition,
            sink.format.extension,
            by_date=sink.path_by == "date",
        )
        self._encoder = sink.format.encoder(task.sink)  # main thread only
        self._splits = self._names.by_date or sink.format.file_key is not None
        self._days: dict[int, str] = {}
        self._range: _Range | None = None
        self._next: int | None = None  # next offset after everything taken
        self._durable: int | None = None
        self._linked: _Linked | None = None

    # --- main thread

    def prepare(self, record: SinkRecord) -> Item:
        return (record.offset, record.timestamp, self._encoder.encode(record))

    def size_of(self, item: Any) -> int:
        payload = item[2]
        if isinstance(payload, bytes):
            return 100 + len(payload)
        return 100 + 16 * len(payload[1])

    # --- writer thread

    def open(self) -> int | None:
        try:
            self._sink.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SinkError(
                self._task.sink,
                f"cannot create directory {self._sink.directory} ({error}): create it, or let "
                "the worker's user write to its parent",
            ) from error
        leftovers = self._names.temporary()
        for path in leftovers:
            path.unlink(missing_ok=True)
        if leftovers:
            logger.warning(
                "sink %r, task %s: deleted temporary files a previous writer left: %s",
                self._task.sink,
                self._task.task_name,
                ", ".join(str(path) for path in leftovers),
            )
            for folder in {path.parent for path in leftovers}:
                fsync_directory(folder)
        self._durable = self._names.max_next_offset()
        return self._durable

    def write(self, batch: SinkBatch) -> int | None:
        before = self._durable
        self._complete_link()
        self._take(batch)
        self._publish_if_due(self._sink.clock())
        return self._durable if self._durable != before else None

    def roll(self, now_ms: int) -> int | None:
        before = self._durable
        self._complete_link()
        self._publish_if_due(now_ms, by_size=False)
        return self._durable if self._durable != before else None

    def close(self) -> None:
        if self._range is not None and self._range.file is not None:
            self._range.file.discard()
        self._range = None

    def _take(self, batch: SinkBatch) -> None:
        if self._range is not None and self._range.finished:
            # A publication failed after the file was finished: it goes first, as it was.
            assert self._next is not None
            self._publish(self._next)
        items: Sequence[Item] = batch.items
        first = batch.first_offset
        if self._next is not None and first < self._next:
            # A retried batch: skip what an earlier attempt took.
            if batch.next_offset <= self._next:
                return
            items = [item for item in items if item[0] >= self._next]
            first = self._next
        elif self._next is not None and first > self._next and self._range is not None:
            # Offsets missing (none to read there): the open file ends where its offsets do.
            if self._range.records:
                self._publish(self._next)
            self._range = None
        if self._range is None:
            self._range = _Range(first)
        if not self._splits:
            if items:
                self._append([item[2] for item in items], None, None)
            self._next = batch.next_offset
            return
        for start, end, day, key, payloads in self._segments(items, batch.next_offset):
            if self._range.records and (day != self._range.day or key is not self._range.key):
                self._publish(start)
            self._append(payloads, day, key)
            self._next = end
        self._next = batch.next_offset

    def _segments(
        self, items: Sequence[Item], batch_next: int
    ) -> Iterator[tuple[int, int, str | None, object, list[Any]]]:
        """Runs of items with one day and file key: (first offset, next offset, day, key,
        payloads)."""
        by_date = self._names.by_date
        key_of = self._format.file_key
        run: list[Any] = []
        start, day, key = 0, None, None
        for offset, timestamp, payload in items:
            item_day = self._day(timestamp) if by_date else None
            item_key = key_of(payload) if key_of is not None else None
            if run and (item_day != day or item_key is not key):
                yield start, offset, day, key, run
                run = []
            if not run:
                start, day, key = offset, item_day, item_key
            run.append(payload)
        if run:
            yield start, batch_next, day, key, run

    def _day(self, timestamp_ms: int) -> str:
        number = timestamp_ms // _DAY_MS
        day = self._days.get(number)
        if day is None:
            day = datetime.fromtimestamp(number * _DAY_MS / 1000, UTC).strftime("%Y-%m-%d")
            self._days[number] = day
        return day

    def _append(self, payloads: list[Any], day: str | None, key: object) -> None:
        current = self._range
        assert current is not None
        if current.file is None:
            current.day, current.key = day, key
            folder = self._names.folder(day)
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                fsync_directory(folder.parent)
            current.path = self._names.temporary_path(current.first, day)
            current.file = self._format.open_file(current.path, payloads[0])
            current.opened_ms = self._sink.clock()
        try:
            current.file.append(payloads)
        except FileLostError as error:
            self._lose(current, error)
        current.records += len(payloads)

    def _publish_if_due(self, now_ms: int, *, by_size: bool = True) -> None:
        current = self._range
        if current is None or current.file is None or not current.records:
            return
        if (
            current.finished  # a publication that failed: due since
            or (by_size and current.file.size() >= self._sink.roll_bytes)
            or now_ms - current.opened_ms >= self._sink.roll_ms
        ):
            assert self._next is not None
            self._publish(self._next)

    def _publish(self, next_offset: int) -> None:
        """Publish the open file as `[first, next_offset)` (steps 1-4 of the docstring)."""
        current = self._range
        assert current is not None and current.file is not None and current.path is not None
        if not current.finished:
            try:
                current.file.finish()
            except FileLostError as error:
                self._lose(current, error)
            current.finished = True
        published = self._names.max_next_offset()
        if published is not None and published > current.first:
            self._fenced(current, f"a file up to offset {published} was published meanwhile")
        final = self._names.final_path(current.first, next_offset, current.day)
        try:
            os.link(current.path, final)
        except FileExistsError:
            self._fenced(current, f"{final} was published meanwhile")
        except FileNotFoundError:
            self._fenced(current, f"its temporary file {current.path} was deleted")
        except OSError as error:
            if error.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise SinkError(
                    self._task.sink,
                    f"cannot publish {final}: the file system of {self._sink.directory} does "
                    f"not support hard links ({error}), which publishing without overwriting "
                    "needs; use a local or NFS directory",
                ) from error
            raise
        self._linked = _Linked(current.path, final.parent, next_offset)
        self._range = _Range(next_offset)
        self._complete_link()

    def _complete_link(self) -> None:
        """Steps 4 of a publication (again, if it failed the last time)."""
        linked = self._linked
        if linked is None:
            return
        linked.temporary.unlink(missing_ok=True)
        fsync_directory(linked.folder)
        self._linked = None
        self._durable = linked.next_offset

    def _fenced(self, current: _Range, why: str) -> NoReturn:
        assert current.file is not None
        current.file.discard()
        self._range = None
        raise SinkFencedError(
            self._task.sink,
            f"task {self._task.task_name} was taken over by another writer ({why}): this "
            f"writer stops without publishing offsets [{current.first}, {self._next})",
        )

    def _lose(self, current: _Range, error: FileLostError) -> NoReturn:
        assert current.file is not None
        current.file.discard()
        self._range = None
        raise SinkFencedError(
            self._task.sink,
            f"task {self._task.task_name}: writing {current.path} failed ({error}), so the "
            f"records from offset {current.first} it held are lost to this writer; it stops, "
            "and the task's next writer reads them again from the last published file's next "
            f"offset ({self._durable}; None: the group's committed offset)",
        ) from error
