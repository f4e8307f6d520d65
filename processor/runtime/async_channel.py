"""One task's channel to an async operator's calls (`processor.topology.async_ops`): it starts
the calls on the worker's event loop (`AsyncRunner`), keeps each record until its outcome has
been dealt with, releases outcomes to the task in the order the operator promises, and says how
far the task may commit.

Every record read gets a slot, in offset order. A slot's call starts when fewer than the
operator's `concurrency` calls run (and the worker-wide limit allows); with `ordered=False`,
also only when no call for the same key runs, so one key's calls never overlap. Outcomes are
released (`release(slot)`, the task forwards them downstream):

- `ordered=True`, and any operator under exactly-once: from the front, while the front slot is
  done, so what a transaction holds is the outputs of records before the offset it commits;
- `ordered=False` under at-least-once: as soon as each is done.

`committable` is the offset of the first slot not released (the completed prefix), or past the
last record read when none is left: a crash repeats only the calls not released. `over_limit`
(records waiting for a call to start) makes the worker pause the partition.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from processor.runtime.async_runner import AsyncRunner
from processor.topology.async_ops import AsyncProcessor, AsyncSpec
from processor.topology.handling import RecordBytes

__all__ = ["AsyncChannel", "Slot"]


@dataclass(slots=True, eq=False)
class Slot:
    """One record read, its call, and its outcome."""

    offset: int
    key: Any
    value: Any
    timestamp: int
    headers: Any
    raw: RecordBytes  # for the error handlers
    key_id: bytes | None
    started: bool = False
    started_at: float = 0.0
    done: bool = False
    released: bool = False
    outcome: Any = None
    error: BaseException | None = None
    future: concurrent.futures.Future[Any] | None = field(default=None, repr=False)


class AsyncChannel:
    def __init__(
        self,
        runner: AsyncRunner,
        spec: AsyncSpec,
        topic: str,
        partition: int,
        *,
        exactly_once: bool,
        current: Callable[[], RecordBytes],
        release: Callable[[AsyncChannel, Slot], None],
    ) -> None:
        # The operator, known from its first record.
        self.processor: AsyncProcessor | None = None
        self.partition = (topic, partition)
        self._runner = runner
        self._concurrency = spec.concurrency
        self._in_order = spec.ordered or exactly_once
        self._per_key = not spec.ordered
        self._current = current
        self._release = release
        self.slots: deque[Slot] = deque()
        self._waiting: deque[Slot] = deque()
        self._busy: set[bytes | None] = set()
        self.running = 0
        self.read_to = -1
        self.closed = False

    # -- AsyncInput: the operator hands each record over ----------------------------------

    def submit(self, processor: AsyncProcessor, key: Any, value: Any) -> None:
        self.processor = processor
        context = processor.context
        raw = self._current()
        slot = Slot(context.offset, key, value, context.timestamp, context.headers, raw, raw[0])
        self.slots.append(slot)
        self._waiting.append(slot)
        self.read_to = context.offset + 1
        self._start()

    # -- the worker's thread ----------------------------------------------------------------

    def complete(self, slot: Slot, future: concurrent.futures.Future[Any]) -> None:
        """`slot`'s call ended (`AsyncRunner.pump`)."""
        self.running -= 1
        slot.done = True
        if future.cancelled():
            slot.error = TimeoutError("the call was cancelled")
        else:
            slot.error = future.exception()
            if slot.error is None:
                slot.outcome = future.result()
        if self.processor is not None:
            seconds = time.monotonic() - slot.started_at
            self._runner.observe(self.processor.name, slot.error is None, seconds)
        if self._per_key:
            self._busy.discard(slot.key_id)
        self._release_ready(slot)
        self._start()

    def committable(self) -> int | None:
        """The next offset the task may commit (None: nothing read yet)."""
        if self.slots:
            return self.slots[0].offset
        return self.read_to if self.read_to >= 0 else None

    def over_limit(self) -> bool:
        """Records wait for a call to start: stop reading more."""
        return bool(self._waiting)

    @property
    def pending(self) -> int:
        """Records read whose outcome was not released yet."""
        return len(self.slots)

    def close(self) -> None:
        """Stop: cancel the calls still running (their records are read again by whoever
        commits from the prefix)."""
        self.closed = True
        for slot in self.slots:
            if slot.future is not None and not slot.done:
                slot.future.cancel()
        self.slots.clear()
        self._waiting.clear()

    def _start(self) -> None:
        waiting = self._waiting
        runner = self._runner
        while waiting and self.running < self._concurrency and runner.room:
            slot = waiting[0] if not self._per_key else self._next_free_key()
            if slot is None:
                return
            if slot is waiting[0]:
                waiting.popleft()
            else:
                waiting.remove(slot)
            if self._per_key:
                self._busy.add(slot.key_id)
            where = (self.partition[0], self.partition[1], slot.offset)
            assert self.processor is not None
            call = self.processor.call(slot.key, slot.value, where)
            slot.started = True
            slot.started_at = time.monotonic()
            self.running += 1
            slot.future = runner.submit(call, self, slot)

    def _next_free_key(self) -> Slot | None:
        busy = self._busy
        for slot in self._waiting:
            if slot.key_id not in busy:
                return slot
        return None

    def _release_ready(self, done: Slot) -> None:
        slots = self.slots
        if not self._in_order and not done.released:
            done.released = True
            self._release(self, done)
        while slots and (slots[0].released or (self._in_order and slots[0].done)):
            slot = slots.popleft()
            if not slot.released:
                slot.released = True
                self._release(self, slot)
