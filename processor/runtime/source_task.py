"""One source outside Kafka, run as a task: its reader polled on the worker's thread, each item
produced to the source's topic through the worker's output (the same producer, and under
exactly-once the same transaction, as every other output).

Lifecycle (illegal transitions raise):

```
OPENING --> OPEN --> CLOSED
   |          ^
   +--> FAILED+ (CLOSED from any state)
```

- OPENING, on a thread of the task's own, so a reader whose `open` waits for a database never
  holds up the worker: read where the source stopped (its key in the positions topic, read
  committed to past any transaction its previous owner left in flight), then `reader.open` it.
- OPEN: the worker's loop calls `poll` when `due`: up to `max_records` items, produced to the
  topic with the source's serdes, the item's headers and timestamp; an item that cannot become
  a record (a `BadLine`, a key function that raised, a value its serde refuses) goes to the
  stage's error handler with its origin in the headers. An empty poll waits
  `source.poll_interval_ms`; `SourceUnavailableError` waits too, doubling up to
  `_MAX_BACKOFF_S`, and polls the same reader again.
- FAILED: the reader could not open (or the position could not be read): `raise_if_failed`
  stops the worker with the error, which names the source.

Where the source stopped is recorded in the positions topic, keyed by the source's name:
- exactly-once: after each poll, the last item's position, in the transaction of its records,
  so a crash neither loses nor repeats an item;
- at-least-once: at each commit, the position the previous commit had reached, whose records
  that commit's producer flush acknowledged: nothing is lost, a crash repeats at most what two
  commit intervals produced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from processor.errors import ProcessorError
from processor.ids import TaskId
from processor.sources.base import Position, SourceUnavailableError
from processor.topology.external_source import (
    ExternalSourceSpec,
    decode_position,
    encode_item,
    encode_position,
)
from processor.topology.handling import Accounting, ErrorHandling, handle_failure
from processor.topology.record import Emitter

__all__ = ["SourceRuntime", "SourceState", "SourceTask"]

log = logging.getLogger("processor.source")

MAX_RECORDS = 500
"""Items per poll: a pass of the worker's loop produces at most this many for one source, so its
other tasks and the group are served in between."""
_MAX_BACKOFF_S = 30.0


class SourceState(Enum):
    OPENING = "opening"
    OPEN = "open"
    FAILED = "failed"
    CLOSED = "closed"


_TRANSITIONS: dict[SourceState, frozenset[SourceState]] = {
    SourceState.OPENING: frozenset({SourceState.OPEN, SourceState.FAILED, SourceState.CLOSED}),
    SourceState.OPEN: frozenset({SourceState.CLOSED}),
    SourceState.FAILED: frozenset({SourceState.CLOSED}),
    SourceState.CLOSED: frozenset(),
}


@dataclass(frozen=True)
class SourceRuntime:
    """What the source tasks of a worker share: where records go, how failures are handled,
    how a source's recorded position is read (blocking; by source name), the positions topic,
    and the guarantee."""

    emitter: Emitter
    handling: ErrorHandling
    accounting: Accounting
    read_position: Callable[[str], bytes | None]
    positions_topic: str
    exactly_once: bool
    max_records: int = MAX_RECORDS
    count_produced: Callable[[str, int], None] = lambda source, records: None
    """Told (source name, records) after each poll that produced some (`/metrics`)."""


class SourceTask:
    def __init__(self, task_id: TaskId, spec: ExternalSourceSpec, runtime: SourceRuntime) -> None:
        self.id = task_id
        self.spec = spec
        self._runtime = runtime
        self._reader = spec.source.reader()
        self.state = SourceState.OPENING
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        # After the last item produced; as recorded (at-least-once); as of the commit under way.
        self._position: Position | None = None
        self._written: Position | None = None
        self._at_commit: Position | None = None
        self._next_poll_at = 0.0
        self._backoff_s = 0.0
        self.produced = 0
        """Items produced to the topic by this task (failed ones not included)."""
        self._thread = threading.Thread(
            target=self._open, name=f"processor-source-{spec.name}", daemon=True
        )
        self._thread.start()

    def _transition(self, target: SourceState) -> None:
        if target not in _TRANSITIONS[self.state]:
            raise ProcessorError(
                f"source {self.spec.name!r}: illegal transition {self.state.value} -> "
                f"{target.value}"
            )
        self.state = target

    # --- source thread

    def _open(self) -> None:
        name = self.spec.name
        try:
            position = decode_position(name, self._runtime.read_position(name))
            self._reader.open(position)
        except BaseException as e:
            with self._lock:
                closed = self.state is SourceState.CLOSED
                if not closed:
                    self.error = e
                    self._transition(SourceState.FAILED)
            log.error("source %r could not open: %s", name, e)
            self._close_reader()
            return
        with self._lock:
            closed = self.state is SourceState.CLOSED
            if not closed:
                self._position = self._written = position
                self._transition(SourceState.OPEN)
        if closed:  # revoked while opening: nothing is read
            self._close_reader()
            return
        log.info("source %r opened at %s", name, "the beginning" if position is None else position)

    # --- worker's thread

    @property
    def opened(self) -> bool:
        return self.state is SourceState.OPEN

    def raise_if_failed(self) -> None:
        if self.state is SourceState.FAILED and self.error is not None:
            raise self.error

    def due(self, now: float) -> bool:
        return self.state is SourceState.OPEN and now >= self._next_poll_at

    def poll(self, now: float, before_output: Callable[[], None]) -> int:
        """Read and produce up to `max_records` items (call `before_output` first, as before
        any output); how many items were read."""
        spec, runtime = self.spec, self._runtime
        try:
            items = self._reader.poll(runtime.max_records)
        except SourceUnavailableError as e:
            first = spec.source.poll_interval_ms / 1000
            self._backoff_s = min(max(self._backoff_s * 2, first), _MAX_BACKOFF_S)
            self._next_poll_at = now + self._backoff_s
            log.warning("%s; polling again in %.1fs", e, self._backoff_s)
            return 0
        self._backoff_s = 0.0
        if not items:
            self._next_poll_at = now + spec.source.poll_interval_ms / 1000
            return 0
        before_output()
        now_ms = int(time.time() * 1000)
        task = str(self.id)
        emitter = runtime.emitter
        for item in items:
            record, failure = encode_item(spec, item, now_ms, task)
            if failure is None:
                emitter.emit(spec.topic, *record)
                self.produced += 1
            else:
                handle_failure(runtime.handling, failure, record, emitter, runtime.accounting)
        self._position = items[-1].position
        runtime.count_produced(spec.name, len(items))
        if runtime.exactly_once:
            self._write_position(self._position)
        return len(items)

    def begin_commit(self) -> None:
        """A commit begins: what was produced so far is flushed (at-least-once) by it."""
        self._at_commit = self._position

    def committed(self) -> None:
        """The commit begun last succeeded: under at-least-once its records are acknowledged,
        so the position they reached can be recorded (the next commit flushes it)."""
        if self._runtime.exactly_once:
            return
        reached = self._at_commit
        if reached is not None and reached != self._written:
            self._write_position(reached)
            self._written = reached

    def _write_position(self, position: Position) -> None:
        name = self.spec.name
        self._runtime.emitter.emit(
            self._runtime.positions_topic,
            name.encode(),
            encode_position(position),
            int(time.time() * 1000),
            None,
        )

    def close(self) -> None:
        """Nothing more is read or produced; the reader closes (now, or when its opening ends)."""
        with self._lock:
            was = self.state
            if was is not SourceState.CLOSED:
                self._transition(SourceState.CLOSED)
        if was is SourceState.OPEN:  # opening or failed: the source thread closes it
            self._close_reader()

    def _close_reader(self) -> None:
        try:
            self._reader.close()
        except Exception as e:
            log.warning("source %r: closing its reader failed: %s", self.spec.name, e)
