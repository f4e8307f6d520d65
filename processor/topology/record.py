"""The record being processed, where it came from, and where sinks send what they write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from processor.errors import ProcessorError

Headers = list[tuple[str, bytes | None]]


@dataclass(slots=True)  # read and written several times per record
class RecordContext:
    """Where the record being processed came from; one per task, updated for every record."""

    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp: int = 0
    headers: Headers | None = field(default=None)
    # Set by a windowed operator that found every window of the record closed: the task counts
    # the record late unless it reached a sink or a store on another branch.
    late: str | None = None


class Emitter(Protocol):
    """Receives each record a sink writes. `origin` is the context of the input record being
    processed (a sink passes it; records without an input, such as dead letters, do not)."""

    def emit(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Headers | None,
        origin: RecordContext | None = None,
    ) -> None: ...


class OperatorError(ProcessorError):
    """A user function raised; the task adds the record's coordinates."""

    def __init__(self, node: str, cause: BaseException) -> None:
        self.node = node
        self.cause = cause
        super().__init__(f"operator {node!r} raised {type(cause).__name__}: {cause}")


class TimerError(OperatorError):
    """A timer's function (`on_timer`, `on_tick`, `on_expire`) raised; what the processing error
    handler gets, with the timer's key bytes (None for a tick), name and time."""

    def __init__(
        self, node: str, cause: BaseException, key: bytes | None, timer: str, at_ms: int
    ) -> None:
        self.key = key
        self.timer = timer
        self.at_ms = at_ms
        super().__init__(node, cause)
        self.args = (
            f"operator {node!r}: {timer} at {at_ms} raised {type(cause).__name__}: {cause}",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class NullKeyError(ProcessorError):
    """A record without a key reached an operator that keeps state per key; the task hands it
    to the deserialization error handler (the record, not the code, is at fault)."""

    def __init__(self, node: str, explanation: str | None = None) -> None:
        self.node = node
        super().__init__(
            explanation
            or f"operator {node!r} keeps state per key and the record has a null key; give the "
            "records keys, or set the key with map() or group_by() before this operator"
        )


class LateRecordError(ProcessorError):
    """A record arrived after every window it belongs to closed (stream time passed the window's
    end plus its grace period); what the late-record handler gets."""

    def __init__(self, node: str, timestamp: int, stream_time: int) -> None:
        self.node = node
        self.timestamp = timestamp
        self.stream_time = stream_time
        super().__init__(
            f"operator {node!r}: record with timestamp {timestamp} is late (stream time "
            f"{stream_time}): its windows are closed; increase the windows' grace_ms to accept "
            "records this late"
        )


class SinkRejectedError(ProcessorError):
    """The producer refused what sink `node` wrote (`cause` names the topic and why)."""

    def __init__(self, node: str, cause: ProcessorError) -> None:
        self.node = node
        self.cause = cause
        super().__init__(f"sink {node!r}: {cause}")
