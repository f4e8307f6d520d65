"""Stream-stream joins: the two sides of a join within `JoinWindows`, each an operator of the
same sub-topology, sharing the join's stores (`processor.state.join_buffer`).

A record of one side, at `ts`, with stream time `st` (the task's, which includes the record):
1. **late** when its window closed: `st > ts + after_ms + grace_ms` (left; right: `before_ms`),
   as Kafka Streams closes it. Dropped, nothing forwarded, marked on the record's context for
   the task to count (or dead-letter), like a record late for a window.
2. otherwise joined with every record of the other side's buffer of the same key in its window
   (left at `ts`: right records in `[ts - before_ms, ts + after_ms]`; right at `ts`: left records
   in `[ts - after_ms, ts + before_ms]`), oldest first, then arrival order: `joiner(left_value,
   right_value)`, at timestamp `max(left ts, right ts)`; then kept in its own buffer.
3. A side whose unmatched records are emitted (left join: the left side; outer join: both)
   marks a record that matched nothing as unmatched, and a match later unmarks it. A record
   still unmatched when no record that is not late can match it any more is emitted once, as
   `joiner(value, None)` (right side: `joiner(None, value)`), at its own timestamp: when `st >
   ts + before_ms + after_ms + grace_ms` (a left record's latest match is a right record at `ts
   + after_ms`, whose own window stays open until `ts + after_ms + before_ms + grace_ms`). That
   is also when a record leaves its buffer (the retention). So a `(x, None)` is never followed
   by an `(x, y)`. Unmatched records are emitted in order of timestamp, then side (left first),
   key bytes and arrival, before the record that moved stream time is joined.

Kafka Streams emits an unmatched left record earlier, at `ts + after_ms + grace_ms`, and joins
records it considers neither late nor expired, so an out-of-order right record can still match
a left record it emitted as unmatched (a spurious `(x, None)`); it also joins a record after its
window closed while its matches are still in the other buffer. Here neither happens.

Records with a null value, and with a null key in an inner join, are skipped (Kafka Streams
drops them too); in a left or outer join a record with a null key cannot match and is emitted
unmatched at once, as Kafka Streams does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from processor.errors import ChangelogRecordTooLargeError
from processor.serdes import Serde
from processor.topology.clock import NEVER, StreamClock
from processor.topology.operator import Operator
from processor.topology.record import RecordContext
from processor.topology.retry import Retry
from processor.windows.spec import JoinWindows

LEFT = b"L"
RIGHT = b"R"


@dataclass(frozen=True)
class JoinSpec:
    """What both sides of one join share: its windows, kind and joiner, its stores (the left
    and right buffers; the unmatched records' store, for left and outer joins) and serdes."""

    windows: JoinWindows
    how: str
    joiner: Callable[[Any, Any], Any]
    left_store: str
    right_store: str
    unmatched_store: str | None
    key_serde: Serde[Any]
    left_serde: Serde[Any]
    right_serde: Serde[Any]

    def emits_unmatched(self, side: bytes) -> bool:
        return self.how == "outer" or (self.how == "left" and side == LEFT)


class Buffer(Protocol):
    """What a join needs of its stores (`processor.state.join_buffer.JoinBuffer`)."""

    def put(self, key: bytes, timestamp: int, value: bytes) -> int: ...
    def fetch(self, key: bytes, low: int, high: int) -> Iterator[tuple[int, int, bytes]]: ...
    def expire(self, before: int) -> int: ...
    def first_time(self) -> int | None: ...
    def put_unmatched(
        self, side: bytes, key: bytes, timestamp: int, seq: int, value: bytes
    ) -> None: ...
    def matched(self, side: bytes, key: bytes, timestamp: int, seq: int) -> None: ...
    def take_unmatched(self, before: int) -> Iterator[tuple[bytes, bytes, int, bytes]]: ...
    def first_unmatched_time(self) -> int | None: ...


class JoinSide(Operator):
    """One side of a join: joins its records with the other side's buffer, keeps them in its
    own, and (both sides alike) emits the unmatched records whose time has come."""

    __slots__ = (
        "_due",
        "clock",
        "emits_unmatched",
        "grace_ms",
        "joiner",
        "key_serde",
        "other",
        "other_after",
        "other_before",
        "other_emits",
        "other_side",
        "retention_ms",
        "serde",
        "side",
        "spec",
        "this",
        "unmatched",
        "window_end",
    )

    not_mine = (ChangelogRecordTooLargeError,)

    def __init__(
        self,
        name: str,
        spec: JoinSpec,
        side: bytes,
        stores: Mapping[str, Any],
        context: RecordContext,
        retry: Retry | None,
        clock: StreamClock,
    ) -> None:
        super().__init__(name, context, retry)
        windows = spec.windows
        left = side == LEFT
        self.spec = spec
        self.side = side
        self.other_side = RIGHT if left else LEFT
        self.this: Buffer = stores[spec.left_store if left else spec.right_store]
        self.other: Buffer = stores[spec.right_store if left else spec.left_store]
        self.unmatched: Buffer | None = (
            stores[spec.unmatched_store] if spec.unmatched_store is not None else None
        )
        self.joiner = spec.joiner
        self.key_serde = spec.key_serde
        self.serde = spec.left_serde if left else spec.right_serde
        # The other side's records this side's record at ts matches: [ts - before, ts + after].
        self.other_before = windows.before_ms if left else windows.after_ms
        self.other_after = windows.after_ms if left else windows.before_ms
        self.window_end = self.other_after
        self.grace_ms = windows.grace_ms
        self.retention_ms = windows.retention_ms
        self.emits_unmatched = spec.emits_unmatched(side)
        self.other_emits = spec.emits_unmatched(self.other_side)
        self.clock = clock
        self._due = 0  # the first record looks at what the stores hold (a restore, maybe)
        clock.register(self, 0)

    def process(self, key: Any, value: Any) -> bool:
        if value is None:
            return False
        if key is None:
            if not self.emits_unmatched:
                return False
            return self._emit(key, value, None, self.side, self.context.timestamp)
        clock = self.clock
        stream_time = clock.stream_time
        if stream_time >= self._due:
            self.on_stream_time(stream_time)
        timestamp = self.context.timestamp
        if stream_time > timestamp + self.window_end + self.grace_ms:
            self.context.late = self.name
            return False
        try:
            key_bytes = self.key_serde.serialize(key)
            value_bytes = self.serde.serialize(value)
        except Exception as e:
            self.failed(e)
        assert key_bytes is not None and value_bytes is not None
        matched = self._join(key, value, key_bytes, timestamp)
        seq = self.this.put(key_bytes, timestamp, value_bytes)
        if not matched and self.emits_unmatched:
            assert self.unmatched is not None
            self.unmatched.put_unmatched(self.side, key_bytes, timestamp, seq, value_bytes)
        due = timestamp + self.retention_ms + 1
        if due < self._due:
            self._due = due
            clock.expect(self, due)
        return True

    def _join(self, key: Any, value: Any, key_bytes: bytes, timestamp: int) -> bool:
        """Join with the other side's records in the window; whether there was one."""
        low, high = timestamp - self.other_before, timestamp + self.other_after
        matched = False
        unmatched = self.unmatched if self.other_emits else None
        for other_ts, seq, data in list(self.other.fetch(key_bytes, low, high)):
            matched = True
            if unmatched is not None:
                unmatched.matched(self.other_side, key_bytes, other_ts, seq)
            other = self._value(self.other_side, data)
            self._emit(key, value, other, self.side, max(timestamp, other_ts))
        return matched

    def _value(self, side: bytes, data: bytes) -> Any:
        serde = self.spec.left_serde if side == LEFT else self.spec.right_serde
        try:
            return serde.deserialize(data)
        except Exception as e:
            self.failed(e)

    def _emit(self, key: Any, this: Any, other: Any, side: bytes, timestamp: int) -> bool:
        """Forward the joiner's result for `this` (a value of `side`) and `other`."""
        left, right = (this, other) if side == LEFT else (other, this)
        try:
            joined = self.joiner(left, right)
        except Exception as e:
            joined = self.recover(e, self.joiner, left, right)
        context = self.context
        saved = context.timestamp
        context.timestamp = timestamp
        try:
            return self.forward(key, joined)
        finally:
            context.timestamp = saved

    def on_stream_time(self, stream_time: int) -> int:
        """Emit the unmatched records no record can match any more, then forget this side's
        records that no record can match; returns when that is next due."""
        before = stream_time - self.retention_ms
        unmatched = self.unmatched
        if unmatched is not None:
            for side, key_bytes, timestamp, data in unmatched.take_unmatched(before):
                try:
                    key = self.key_serde.deserialize(key_bytes)
                except Exception as e:
                    self.failed(e)
                self._emit(key, self._value(side, data), None, side, timestamp)
        self.this.expire(before)
        oldest = [t for t in (self.this.first_time(),) if t is not None]
        if unmatched is not None:
            first = unmatched.first_unmatched_time()
            if first is not None:
                oldest.append(first)
        due = min(oldest) + self.retention_ms + 1 if oldest else NEVER
        self._due = due
        return due


@dataclass(frozen=True)
class JoinSideSpec:
    """What a STREAM_JOIN node of the graph carries: its join, and which side it is."""

    spec: JoinSpec
    side: bytes


def join_side(
    name: str,
    side: JoinSideSpec,
    stores: Mapping[str, Any],
    context: RecordContext,
    retry: Retry | None,
    clock: StreamClock,
) -> JoinSide:
    return JoinSide(name, side.spec, side.side, stores, context, retry, clock)
