"""What happens to a record that cannot be processed, and where every input record ends up.

A record fails at one of three stages: its bytes cannot be deserialized (or it lacks a key a
keyed operator needs), a user function raises (or an aggregate it updates cannot be read), or an
output it caused cannot be produced (a sink's record, or a store update too large for its
changelog). For each stage the application picks a handler:

- `fail` (the default): the worker stops with one message naming the record's topic, partition
  and offset; its offset is not committed, so a restart after the fix reads it again;
- `skip`: a log line and a metric per record, then on to the next record;
- `dead_letter`: the record's original key, value and headers go to the dead-letter topic, with
  headers naming the error, the stage, the source topic, partition and offset, the task and the
  time; then on to the next record.

Every input record ends up with exactly one `Outcome`, counted by `Accounting`. The same code
runs in a worker (`processor.runtime.task`) and in the in-memory test driver.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from processor.errors import (
    ChangelogRecordTooLargeError,
    DeserializationError,
    RecordError,
    RecordRejectedError,
)
from processor.topology.record import (
    Emitter,
    Headers,
    LateRecordError,
    NullKeyError,
    OperatorError,
    SinkRejectedError,
    TimerError,
)

log = logging.getLogger("processor.records")

# Header names on a dead-letter record (besides the original record's own headers).
HEADER_PREFIX = "processor.error."
HEADER_STAGE = HEADER_PREFIX + "stage"
HEADER_TYPE = HEADER_PREFIX + "type"
HEADER_MESSAGE = HEADER_PREFIX + "message"
HEADER_OPERATOR = HEADER_PREFIX + "operator"
HEADER_TOPIC = HEADER_PREFIX + "topic"
HEADER_PARTITION = HEADER_PREFIX + "partition"
HEADER_OFFSET = HEADER_PREFIX + "offset"
HEADER_TASK = HEADER_PREFIX + "task"
HEADER_TIME = HEADER_PREFIX + "time"
HEADER_TARGET_TOPIC = HEADER_PREFIX + "target.topic"
# A timer's firing that failed (`TimerError`): which timer (or "tick", "expiry of 'store'") and
# its time.
HEADER_TIMER = HEADER_PREFIX + "timer"
HEADER_TIMER_TIME = HEADER_PREFIX + "timer.time"
# A header value longer than this is cut: an exception message may quote a huge value.
MAX_MESSAGE_CHARS = 2000


# A record as read or written: key, value, timestamp, headers.
RecordBytes = tuple[bytes | None, bytes | None, int, Headers | None]


class ErrorHandler(Enum):
    FAIL = "fail"
    SKIP = "skip"
    DEAD_LETTER = "dead_letter"

    @classmethod
    def parse(cls, text: str) -> ErrorHandler:
        """`"dead_letter"` -> DEAD_LETTER; raises ValueError naming the choices."""
        try:
            return cls(text.strip().lower().replace("-", "_"))
        except ValueError:
            choices = ", ".join(h.value for h in cls)
            raise ValueError(f"{text!r} is not one of {choices}") from None


class ErrorStage(Enum):
    DESERIALIZATION = "deserialization"
    PROCESSING = "processing"
    PRODUCTION = "production"
    # Not an error: a record for windows that had closed (late_record_handler).
    LATE = "late"


class Outcome(Enum):
    OUTPUT = "output"  # wrote to a sink or a store
    FILTERED = "filtered"  # processed, and the topology dropped it
    SKIPPED = "skipped"
    DEAD_LETTERED = "dead_lettered"
    LATE = "late"  # its windows had closed: not aggregated (late_record_handler skip)


@dataclass(frozen=True)
class ErrorHandling:
    """The handler for each stage; `source_overrides` maps a source topic to the deserialization
    handler that source was given in the topology."""

    deserialization: ErrorHandler = ErrorHandler.FAIL
    processing: ErrorHandler = ErrorHandler.FAIL
    production: ErrorHandler = ErrorHandler.FAIL
    dead_letter_topic: str = ""
    source_overrides: Mapping[str, ErrorHandler] = field(default_factory=dict)
    # Late records: skip counts them as `Outcome.LATE` (no log line per record: lateness is
    # expected), dead_letter sends them on with stage `late`, fail stops.
    late: ErrorHandler = ErrorHandler.SKIP

    def handler_for(self, stage: ErrorStage, topic: str) -> ErrorHandler:
        if stage is ErrorStage.DESERIALIZATION:
            return self.source_overrides.get(topic, self.deserialization)
        if stage is ErrorStage.PROCESSING:
            return self.processing
        if stage is ErrorStage.LATE:
            return self.late
        return self.production

    @property
    def uses_dead_letters(self) -> bool:
        handlers = {self.deserialization, self.processing, self.production, self.late}
        return ErrorHandler.DEAD_LETTER in handlers | set(self.source_overrides.values())


@dataclass(frozen=True)
class RecordFailure:
    """Why and where one input record failed."""

    stage: ErrorStage
    error: BaseException
    topic: str
    partition: int
    offset: int
    task: str
    operator: str | None = None
    target_topic: str | None = None  # production: the topic the output could not be written to
    # A firing, not a record, failed: (what fired, its time) (`TimerError`).
    timer: tuple[str, int] | None = None

    @property
    def description(self) -> str:
        where = f" in operator {self.operator!r}" if self.operator else ""
        if self.timer is not None:
            where += f" ({self.timer[0]} at {self.timer[1]})"
        target = f" to {self.target_topic!r}" if self.target_topic else ""
        return f"{self.stage.value} error{where}{target}: {type(self.error).__name__}: {self.error}"


# What a record's trip through the processors may raise that a handler deals with.
RECORD_ERRORS = (
    DeserializationError,
    NullKeyError,
    SinkRejectedError,
    ChangelogRecordTooLargeError,
    OperatorError,
)


def failure_of(
    error: Exception, topic: str, partition: int, offset: int, task: str
) -> RecordFailure:
    """The stage and cause of one of `RECORD_ERRORS`, raised by the record at `offset`."""
    if isinstance(error, DeserializationError | NullKeyError):
        return RecordFailure(ErrorStage.DESERIALIZATION, error, topic, partition, offset, task)
    if isinstance(error, SinkRejectedError):
        rejected = error.cause
        target = rejected.target_topic if isinstance(rejected, RecordRejectedError) else None
        return RecordFailure(
            ErrorStage.PRODUCTION, rejected, topic, partition, offset, task, error.node, target
        )
    if isinstance(error, ChangelogRecordTooLargeError):
        # Refused by the store when written: neither the store nor its changelog has it.
        return RecordFailure(
            ErrorStage.PRODUCTION,
            error,
            topic,
            partition,
            offset,
            task,
            target_topic=error.target_topic,
        )
    if isinstance(error, LateRecordError):
        return RecordFailure(ErrorStage.LATE, error, topic, partition, offset, task, error.node)
    assert isinstance(error, OperatorError), error
    timer = (error.timer, error.at_ms) if isinstance(error, TimerError) else None
    return RecordFailure(
        ErrorStage.PROCESSING, error.cause, topic, partition, offset, task, error.node, timer=timer
    )


def dead_letter_headers(
    failure: RecordFailure, original: Headers | None, now_ms: int
) -> list[tuple[str, bytes | None]]:
    """The original headers, then ours: stage, error type and message, origin, task, time."""
    message = str(failure.error)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "..."
    headers: list[tuple[str, bytes | None]] = list(original or ())
    headers += [
        (HEADER_STAGE, failure.stage.value.encode()),
        (HEADER_TYPE, type(failure.error).__name__.encode()),
        (HEADER_MESSAGE, message.encode("utf-8", "backslashreplace")),
        (HEADER_TOPIC, failure.topic.encode()),
        (HEADER_PARTITION, str(failure.partition).encode()),
        (HEADER_OFFSET, str(failure.offset).encode()),
        (HEADER_TASK, failure.task.encode()),
        (HEADER_TIME, str(now_ms).encode()),
    ]
    if failure.operator is not None:
        headers.append((HEADER_OPERATOR, failure.operator.encode()))
    if failure.target_topic is not None:
        headers.append((HEADER_TARGET_TOPIC, failure.target_topic.encode()))
    if failure.timer is not None:
        headers.append((HEADER_TIMER, failure.timer[0].encode()))
        headers.append((HEADER_TIMER_TIME, str(failure.timer[1]).encode()))
    return headers


# How many skipped and dead-lettered records a worker remembers for the status page.
RECENT_FAILURES = 20


@dataclass(frozen=True)
class FailureNote:
    """A record (or a firing) that a handler skipped or dead-lettered, for people to see."""

    time_ms: int
    task: str
    outcome: str  # Outcome.SKIPPED or DEAD_LETTERED's value
    where: str  # topic[partition]@offset
    description: str


class Accounting:
    """How many input records ended in each outcome, by reason (the failing stage, or "" for
    output and filtered).

    Counts are pending until the commit that makes their outcome final, then `committed`: a
    transaction that aborts (and whose records are processed again) drops its pending counts,
    so under exactly-once each input record is counted once. Output and filtered records, one
    per record processed, are plain integers (`pending_output`, `pending_filtered`) that the
    task increments itself; the rare rest goes through `count`.

    `recent`: the last `RECENT_FAILURES` records skipped or dead-lettered, committed or not
    (what a person looking at the status page wants to know about)."""

    __slots__ = (
        "committed",
        "pending",
        "pending_filtered",
        "pending_output",
        "pending_timers",
        "recent",
        "timers",
    )

    def __init__(self) -> None:
        self.pending_output = 0
        self.pending_filtered = 0
        self.pending: Counter[tuple[Outcome, str]] = Counter()
        self.committed: Counter[tuple[Outcome, str]] = Counter()
        # Timer firings (timers, ticks, expiries), by outcome: fired, skipped, dead_lettered.
        self.pending_timers: Counter[str] = Counter()
        self.timers: Counter[str] = Counter()
        self.recent: deque[FailureNote] = deque(maxlen=RECENT_FAILURES)

    def count_firing(self, outcome: str = "fired") -> None:
        self.pending_timers[outcome] += 1

    def count(self, outcome: Outcome, reason: str = "") -> None:
        if outcome is Outcome.OUTPUT:
            self.pending_output += 1
        elif outcome is Outcome.FILTERED:
            self.pending_filtered += 1
        else:
            self.pending[(outcome, reason)] += 1

    def retract(self, outcome: Outcome) -> None:
        """Take back one input counted as `outcome` (`OUTPUT`: an output it caused could not be
        produced after all, and it is counted again as skipped or dead-lettered)."""
        if outcome is Outcome.OUTPUT and self.pending_output > 0:
            self.pending_output -= 1
        elif outcome is Outcome.FILTERED and self.pending_filtered > 0:
            self.pending_filtered -= 1
        elif self.committed[(outcome, "")] > 0:
            self.committed[(outcome, "")] -= 1

    def commit(self) -> None:
        self.pending[(Outcome.OUTPUT, "")] += self.pending_output
        self.pending[(Outcome.FILTERED, "")] += self.pending_filtered
        self.committed.update(self.pending)
        self.committed = +self.committed  # no zero entries
        self.timers.update(self.pending_timers)
        self.drop_pending()

    def drop_pending(self) -> None:
        self.pending_output = self.pending_filtered = 0
        self.pending.clear()
        self.pending_timers.clear()

    def totals(self) -> dict[Outcome, int]:
        """Committed input records per outcome."""
        result = dict.fromkeys(Outcome, 0)
        for (outcome, _), n in self.committed.items():
            result[outcome] += n
        return result


def handle_failure(
    handling: ErrorHandling,
    failure: RecordFailure,
    record: RecordBytes,
    emitter: Emitter,
    accounting: Accounting,
) -> None:
    """Apply the stage's handler to `failure` of `record` (key, value, timestamp and headers as
    read, or, for a production failure, as the output that could not be written). Raises a
    RecordError naming the record and the fix when the handler is `fail`."""
    handler = handling.handler_for(failure.stage, failure.topic)
    if handler is ErrorHandler.FAIL:
        raise RecordError(
            failure.topic,
            failure.partition,
            failure.offset,
            f"task {failure.task}: {failure.description}. Stopping: "
            f"{failure.stage.value}_error_handler is fail; fix the cause and restart ("
            + (
                "the firing is not committed, so it fires again"
                if failure.timer is not None
                else "the record's offset is not committed, so it is read again"
            )
            + f"), or set {failure.stage.value}_error_handler to skip or dead_letter",
        ) from failure.error
    where = f"{failure.topic}[{failure.partition}]@{failure.offset}"
    if handler is ErrorHandler.SKIP and failure.stage is ErrorStage.LATE:
        accounting.count(Outcome.LATE, failure.stage.value)
        return
    if handler is ErrorHandler.SKIP:
        log.warning("skipping record %s (task %s): %s", where, failure.task, failure.description)
        _count(accounting, failure, Outcome.SKIPPED)
        return
    key, value, timestamp, headers = record
    now_ms = int(time.time() * 1000)
    try:
        emitter.emit(
            handling.dead_letter_topic,
            key,
            value,
            timestamp,
            dead_letter_headers(failure, headers, now_ms),
        )
    except RecordRejectedError as e:
        raise RecordError(
            failure.topic,
            failure.partition,
            failure.offset,
            f"task {failure.task}: {failure.description}; and it cannot be dead-lettered "
            f"either: {e}. Stopping, with its offset uncommitted",
        ) from e
    log.warning(
        "record %s (task %s) sent to dead-letter topic %s: %s",
        where,
        failure.task,
        handling.dead_letter_topic,
        failure.description,
    )
    _count(accounting, failure, Outcome.DEAD_LETTERED)


def _count(accounting: Accounting, failure: RecordFailure, outcome: Outcome) -> None:
    where = f"{failure.topic}[{failure.partition}]@{failure.offset}"
    accounting.recent.append(
        FailureNote(
            int(time.time() * 1000), failure.task, outcome.value, where, failure.description[:500]
        )
    )
    if failure.timer is not None:
        accounting.pending_timers[outcome.value] += 1
    else:
        accounting.count(outcome, failure.stage.value)
