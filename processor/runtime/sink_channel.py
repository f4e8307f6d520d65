"""One sink task's channel to its writer: batches built on the worker's thread, written on a
thread of the channel's own, so a slow or unreachable destination never blocks the worker's
other tasks.

The worker's thread `add`s each prepared record to the current batch and hands the batch over
when it holds `max_batch_records` or its first record has waited `max_batch_ms` (`tick`). The
writer thread opens the writer (`SinkWriter.open`: where to resume), then writes batches in
order, retrying a failed write of the same batch with backoff (0.1 s doubling to 10 s, for as
long as it takes: a database that is down delays the sink, it does not lose records), and
calls `roll` when idle. `durable` is the next offset up to which the destination holds every
record: the only offset the task commits.

Memory is bounded per task: the bytes of the items handed over and not yet written, plus the
current batch, above the sink's `max_buffer_bytes` make `over_limit` true, and the worker pauses
the task's partition until they fall under half of it (`processor_sink_paused_seconds_total`).

States: OPENING -> OPEN -> CLOSED, or FAILED (a `SinkError` from the writer, e.g. a missing
table, or `SinkFencedError`: another worker took the task over) from either; `raise_if_failed`
tells the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from functools import partial
from typing import Any, TypeVar

from processor.sinks.base import (
    Sink,
    SinkBatch,
    SinkError,
    SinkFencedError,
    SinkRecord,
    SinkTask,
)

__all__ = ["ChannelState", "SinkChannel"]

log = logging.getLogger("processor.sink")

T = TypeVar("T")

_FIRST_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 10.0
_IDLE_WAIT_S = 0.2


class ChannelState(Enum):
    OPENING = "opening"
    OPEN = "open"
    FAILED = "failed"
    CLOSED = "closed"


class SinkChannel:
    def __init__(
        self,
        sink: Sink,
        task: SinkTask,
        *,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.sink = sink
        self.task = task
        self.partition = (task.topic, task.partition)
        self._writer = sink.writer(task)
        self._observe = observe or _ignore
        self.state = ChannelState.OPENING
        self.error: BaseException | None = None
        self.resume_at: int | None = None
        """Where the destination says reading resumes (None: from the committed offset)."""
        self.durable: int | None = None
        """The next offset up to which the destination holds every record durably."""
        self._wake = threading.Condition()
        self._queue: deque[SinkBatch] = deque()
        self._queued_bytes = 0
        self._closing = False
        # The current batch (worker thread only).
        self._items: list[Any] = []
        self._items_bytes = 0
        self._item_bytes = 0
        self._batch_first = -1
        self._batch_since = 0.0
        self._read_to = -1
        self._handed_to = -1
        self.paused = False
        self._checked_at = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"sink-{sink.name}-{task.partition}", daemon=True
        )
        self._thread.start()

    # -- the worker's thread ---------------------------------------------------------------

    def prepare(self, record: SinkRecord) -> Any:
        return self._writer.prepare(record)

    def read_to(self, next_offset: int) -> None:
        self._read_to = next_offset

    def add(self, item: Any, offset: int) -> None:
        items = self._items
        if not items:
            self._batch_first = offset
            self._batch_since = time.monotonic()
        items.append(item)
        if len(items) & 15 == 1:
            # What an item costs, measured on the first of a batch and every 16th after it (a
            # measure may walk the item: not on every record).
            self._item_bytes = self._writer.size_of(item)
        self._items_bytes += self._item_bytes
        if len(items) >= self.sink.max_batch_records:
            self.hand_over()

    def tick(self, now: float) -> None:
        """Once per pass of the worker's loop: hand the batch over when it is old enough, or
        when only skipped records were read since the last one."""
        if self._items:
            if now - self._batch_since >= self.sink.max_batch_ms / 1000:
                self.hand_over()
        elif self._read_to > self._handed_to >= 0:
            self.hand_over()

    def hand_over(self) -> None:
        if self._read_to < 0:
            return
        first = self._handed_to if self._handed_to >= 0 else self._batch_first
        if first < 0:
            first = self._read_to
        batch = SinkBatch(self._items, first, self._read_to, self._items_bytes)
        self._items, self._items_bytes = [], 0
        self._handed_to = self._read_to
        with self._wake:
            self._queue.append(batch)
            self._queued_bytes += batch.size_bytes
            self._wake.notify()

    @property
    def pending_bytes(self) -> int:
        return self._queued_bytes + self._items_bytes

    def over_limit(self) -> bool:
        """Whether the task's input should be paused: too much waits for the writer (until it
        falls under half the limit)."""
        limit = self.sink.max_buffer_bytes
        now = time.monotonic()
        if self.paused:
            self._observe("paused_seconds", now - self._checked_at)
        self._checked_at = now
        pending = self.pending_bytes
        self._observe("buffered_bytes", float(pending))
        self.paused = pending > (limit // 2 if self.paused else limit)
        return self.paused

    def raise_if_failed(self) -> None:
        """Raise what stopped the writer, unless it was fenced: another worker has the task
        now, and the group takes it from this one at its next rebalance."""
        error = self.error
        fenced = isinstance(error, SinkFencedError)
        if self.state is ChannelState.FAILED and error is not None and not fenced:
            raise error

    @property
    def fenced(self) -> bool:
        """The writer stopped because the destination says another writer has the task (or
        this one lost what it had not made durable): the task must start over from `open`."""
        return self.state is ChannelState.FAILED and isinstance(self.error, SinkFencedError)

    def drain(self, seconds: float) -> None:
        """Hand the current batch over and let the writer finish what is queued, for up to
        `seconds` (before the task's last commit here: less to read again after it moves)."""
        if self.state is not ChannelState.OPEN:
            return
        if self._items or self._read_to > self._handed_to:
            self.hand_over()
        deadline = time.monotonic() + seconds
        with self._wake:
            while self._queue and self.state is ChannelState.OPEN:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(min(left, _IDLE_WAIT_S))

    def close(self) -> None:
        """Stop. What is not durable is read again by the task's next owner, from the durable
        offset."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)

    # -- the writer's thread ---------------------------------------------------------------

    def _run(self) -> None:
        writer = self._writer
        try:
            resume = self._retrying("open", writer.open)
            with self._wake:
                self.resume_at = self.durable = resume
                if self.state is ChannelState.OPENING:
                    self.state = ChannelState.OPEN
            if resume is not None:
                log.info(
                    "sink %s, %s: resuming at offset %d", self.sink.name, self._where(), resume
                )
            self._write_until_closed()
        except _Closing:
            pass
        except BaseException as e:  # what the worker raises (`raise_if_failed`)
            self.error = e
            self.state = ChannelState.FAILED
            log.error("sink %s, %s: %s", self.sink.name, self._where(), e)
        finally:
            if self.state is not ChannelState.FAILED:
                self.state = ChannelState.CLOSED
            try:
                writer.close()
            except Exception as e:
                log.warning("sink %s, %s: closing the writer: %s", self.sink.name, self._where(), e)

    def _write_until_closed(self) -> None:
        writer = self._writer
        while True:
            with self._wake:
                if not self._queue and not self._closing:
                    self._wake.wait(_IDLE_WAIT_S)
                if self._closing:
                    return
                batch = self._queue[0] if self._queue else None
            if batch is None:
                self._advance(self._retrying("roll", lambda: writer.roll(_now_ms())))
                continue
            started = time.monotonic()
            durable = self._retrying("write", partial(writer.write, batch))
            self._observe("batch_seconds", time.monotonic() - started)
            self._observe("rows", float(len(batch.items)))
            with self._wake:
                self._queue.popleft()
                self._queued_bytes -= batch.size_bytes
                self._wake.notify_all()
            self._advance(durable)

    def _advance(self, durable: int | None) -> None:
        if durable is not None and (self.durable is None or durable > self.durable):
            self.durable = durable

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """`call()` until it succeeds; a `SinkError` (the destination refuses for good, or the
        task was taken over) is raised at once, any other error retried with backoff."""
        backoff = _FIRST_BACKOFF_S
        failures = 0
        while True:
            if self._closing:
                raise _Closing
            try:
                result = call()
            except SinkError:
                raise
            except Exception as e:
                failures += 1
                self._observe("errors", 1.0)
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "sink %s, %s: %s failed (%s: %s); retrying in %.1fs (attempt %d)",
                        self.sink.name,
                        self._where(),
                        what,
                        type(e).__name__,
                        e,
                        backoff,
                        failures,
                    )
                with self._wake:
                    if not self._closing:
                        self._wake.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            if failures:
                log.info(
                    "sink %s, %s: %s succeeded after %d failures",
                    self.sink.name,
                    self._where(),
                    what,
                    failures,
                )
            return result

    def _where(self) -> str:
        return f"{self.task.topic} partition {self.task.partition}"


class _Closing(Exception):
    """The channel closes while a call was being retried."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ignore(name: str, value: float) -> None:
    pass
