"""Windowed aggregations: per key and window, fold each record into the window's aggregate.

Three operators share one base (`WindowedAggregate`): time windows (tumbling and hopping), sessions
and sliding windows. Each reads stream time from the task's `StreamClock`; a record whose
windows are all closed is late: not aggregated, marked on the record's context for the task to
count (or dead-letter). Each window keeps, with its aggregate, the largest timestamp of its records:
the timestamp every result for that window is forwarded with.

emit="update" forwards `(Windowed(key, start, end), aggregate)` at every change (sessions merged
away are forwarded as `(Windowed(...), None)` first). emit="final" forwards each window once, when
stream time passes its last millisecond plus grace (sessions: plus the inactivity gap too, until
which a record may still extend them). The store's index orders windows by last millisecond, so
closing is a range scan from where the last emission ended (a cursor kept in the store, written
to the changelog with the windows, so a restarted or moved task neither repeats nor skips one).

Windows are dropped from the store once stream time passes their last millisecond plus the
retention (at least the emit delay, so nothing is dropped before it is final).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from processor.errors import ChangelogRecordTooLargeError, StoredValueError
from processor.serdes import Serde
from processor.topology.change import Change
from processor.topology.clock import NEVER, StreamClock
from processor.topology.operator import Operator
from processor.topology.record import NullKeyError, RecordContext
from processor.topology.retry import Retry
from processor.windows.layout import key_prefix, window_key
from processor.windows.spec import (
    HoppingWindows,
    SessionWindows,
    TumblingWindows,
    Windowed,
)

_CURSOR = b"emitted"
# A reduce has no initializer: its first value is its aggregate.
_NOTHING: Any = object()


class Window(Protocol):
    """A stored window (`processor.state.window_store.WindowEntry`)."""

    key: bytes
    start: int
    end: int
    max_timestamp: int
    aggregate: bytes


class WindowedStore(Protocol):
    """What these operators need of a window store (`processor.state.window_store`)."""

    name: str
    value_serde: Serde[Any]

    def key_bytes(self, key: Any) -> bytes: ...
    def key_of(self, data: bytes) -> Any: ...
    def value_of(self, aggregate: bytes, key: object = None) -> Any: ...
    def get(self, key: bytes, start: int, end: int) -> Window | None: ...
    def remove(self, key: bytes, start: int, end: int) -> None: ...
    def windows_of(self, key: bytes) -> Iterator[Window]: ...
    def stored_at(self, prefix: bytes, start: int, end: int) -> bytes: ...
    def lookup(self, stored: bytes) -> tuple[int, bytes] | None: ...
    def put_at(
        self,
        stored: bytes,
        key: bytes,
        start: int,
        end: int,
        max_timestamp: int,
        aggregate: bytes,
        new: bool,
    ) -> None: ...
    def closed(
        self, after: bytes | None, before_end: int
    ) -> Iterator[tuple[bytes, Window | None]]: ...
    def expire(self, before_end: int) -> int: ...
    def first_end(self, after: bytes | None = None) -> int | None: ...
    def first_live_end(self) -> int | None: ...
    def meta(self, name: bytes) -> bytes | None: ...
    def set_meta(self, name: bytes, value: bytes) -> None: ...
    def add_record(self, key: bytes, timestamp: int, value: bytes) -> None: ...
    def records(self, key: bytes, low: int, high: int) -> Iterator[tuple[int, bytes]]: ...


class WindowedAggregate(Operator):
    """What every windowed aggregation shares: folding a value in, emitting, closing, expiring.
    `delay_ms`: how long after a window's last millisecond it is final (grace, plus the gap for
    sessions)."""

    __slots__ = (
        "_announced",
        "_cursor",
        "_loaded",
        "aggregator",
        "clock",
        "delay_ms",
        "emit_final",
        "emits_changes",
        "grace_ms",
        "initializer",
        "retention_ms",
        "sends_old",
        "store",
        "value_serde",
    )

    not_mine = (ChangelogRecordTooLargeError,)

    def __init__(
        self,
        name: str,
        store: WindowedStore,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        context: RecordContext,
        retry: Retry | None,
        *,
        clock: StreamClock,
        grace_ms: int,
        delay_ms: int,
        emit_final: bool,
        retention_ms: int,
    ) -> None:
        super().__init__(name, context, retry)
        self.store = store
        self.value_serde = store.value_serde
        self.initializer = initializer
        self.aggregator = aggregator
        self.clock = clock
        self.grace_ms = grace_ms
        self.delay_ms = delay_ms
        self.emit_final = emit_final
        self.retention_ms = max(retention_ms, delay_ms)
        # Set by processor.topology.tables.TablePlan.connect when a table operator reads this:
        # it forwards Change(new, old), old being the window's aggregate before (when asked).
        self.emits_changes = False
        self.sends_old = False
        self._cursor: bytes | None = None
        self._loaded = False
        # The stream time this operator told the clock it next has something due at.
        self._announced = 0
        clock.register(self, 0)  # the first record loads where emission got to

    # -- aggregating -----------------------------------------------------------------------

    def _initial(self) -> Any:
        if self.initializer is None:
            return _NOTHING
        try:
            return self.initializer()
        except Exception as e:
            self.failed(e)

    def _add(self, key: Any, value: Any, aggregate: Any) -> Any:
        if aggregate is _NOTHING:
            return value
        try:
            return self.aggregator(key, value, aggregate)
        except Exception as e:
            return self.recover(e, self.aggregator, key, value, aggregate)

    def _read(self, window: Window, key: Any) -> Any:
        return self._read_bytes(window.aggregate, key)

    def _read_bytes(self, aggregate: bytes, key: Any) -> Any:
        try:
            return self.store.value_of(aggregate, key)
        except StoredValueError as e:
            self.failed(e)

    def _write(
        self,
        key: Any,
        data_key: bytes,
        start: int,
        end: int,
        max_ts: int,
        aggregate: Any,
        new: bool,
        stored: bytes | None = None,
    ) -> None:
        """Store a window's new aggregate; `stored`: its stored key, when already built."""
        try:
            data = self.value_serde.serialize(aggregate)
        except Exception as e:
            self.failed(e)
        if data is None:
            self.failed(ValueError(f"the aggregate of {key!r} is None; aggregates cannot be None"))
        if stored is None:
            stored = window_key(data_key, start, end)
        self.store.put_at(stored, data_key, start, end, max_ts, data, new)
        if new:
            self._announce(end)

    def _announce(self, end: int) -> None:
        """A new window ending at `end`: tell the clock if it is due before anything else."""
        due = self._due(end, self.delay_ms if self.emit_final else self.retention_ms)
        if due < self._announced:
            self._announced = due
            self.clock.expect(self, due)

    # A window's end is exclusive (time windows: its last millisecond is end - 1) or inclusive
    # (sessions, sliding windows: end is its last millisecond).
    end_exclusive = True

    def _due(self, end: int, after_ms: int) -> int:
        """The stream time at which a window ending at `end` has been over for `after_ms`:
        past its last millisecond plus `after_ms`."""
        return end - self.end_exclusive + after_ms + 1

    def _before_end(self, stream_time: int, after_ms: int) -> int:
        """Windows ending before this have been over for `after_ms` at `stream_time`."""
        return stream_time - after_ms + self.end_exclusive

    def _emit(
        self, key: Any, start: int, end: int, max_ts: int, aggregate: Any, old: Any = None
    ) -> None:
        """Forward a window's aggregate (None: the window is gone); `old`, its aggregate before,
        matters only to table operators reading this (`sends_old`)."""
        context = self.context
        timestamp = context.timestamp
        context.timestamp = max_ts
        try:
            window = Windowed(key, start, end)
            self.forward(window, Change(aggregate, old) if self.emits_changes else aggregate)
        finally:
            context.timestamp = timestamp

    def _old(self, aggregate: bytes | None, key: Any) -> Any:
        """A window's aggregate before this record, read again from its stored bytes (the
        aggregator may have changed the object it was given), when a table operator needs it."""
        if aggregate is None or not self.sends_old:
            return None
        return self._read_bytes(aggregate, key)

    def _late(self) -> bool:
        self.context.late = self.name
        return False

    # -- time ------------------------------------------------------------------------------

    def on_stream_time(self, stream_time: int) -> int:
        store = self.store
        if not self._loaded:
            self._cursor = store.meta(_CURSOR) or None
            self._loaded = True
        if self.emit_final:
            self._emit_closed(stream_time)
        store.expire(self._before_end(stream_time, self.retention_ms))
        due = NEVER
        if self.emit_final:
            end = store.first_end(self._cursor)
            if end is not None:
                due = self._due(end, self.delay_ms)
        oldest = store.first_live_end()
        if oldest is not None:
            due = min(due, self._due(oldest, self.retention_ms))
        self._announced = due
        return due

    def _emit_closed(self, stream_time: int) -> None:
        store = self.store
        before = self._before_end(stream_time, self.delay_ms)
        start = self._cursor
        try:
            for index_entry, window in store.closed(start, before):
                if window is not None:
                    key = store.key_of(window.key)
                    aggregate = self._read(window, key)
                    self._emit(key, window.start, window.end, window.max_timestamp, aggregate)
                self._cursor = index_entry
        finally:
            # Where emission got to, in the store (and its changelog) with the windows: a task
            # that moves or restarts goes on from there, neither repeating nor skipping one.
            if self._cursor is not None and self._cursor != start:
                store.set_meta(_CURSOR, self._cursor)


class TimeWindowAggregate(WindowedAggregate):
    """Tumbling and hopping windows: the record goes into every open window containing it."""

    __slots__ = ("advance_ms", "size_ms", "starts_of")

    def __init__(
        self,
        name: str,
        store: WindowedStore,
        windows: TumblingWindows | HoppingWindows,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        context: RecordContext,
        retry: Retry | None,
        *,
        clock: StreamClock,
        emit_final: bool,
        retention_ms: int,
    ) -> None:
        super().__init__(
            name,
            store,
            initializer,
            aggregator,
            context,
            retry,
            clock=clock,
            grace_ms=windows.grace_ms,
            delay_ms=windows.grace_ms,
            emit_final=emit_final,
            retention_ms=retention_ms,
        )
        self.size_ms = windows.size_ms
        self.advance_ms = windows.advance_ms
        self.starts_of = windows.starts_of

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            raise NullKeyError(self.name)
        if value is None:
            return False
        store = self.store
        timestamp = self.context.timestamp
        open_from = self.clock.stream_time - self.grace_ms  # a window ending before is closed
        data_key = store.key_bytes(key)
        prefix = key_prefix(data_key)
        size = self.size_ms
        aggregated = False
        for start in self.starts_of(timestamp):
            end = start + size
            if end - 1 < open_from:
                continue
            stored = store.stored_at(prefix, start, end)
            found = store.lookup(stored)
            if found is None:
                aggregate = self._add(key, value, self._initial())
                max_ts = timestamp
            else:
                aggregate = self._add(key, value, self._read_bytes(found[1], key))
                max_ts = max(found[0], timestamp)
            self._write(key, data_key, start, end, max_ts, aggregate, found is None, stored)
            if not self.emit_final:
                old = self._old(None if found is None else found[1], key)
                self._emit(key, start, end, max_ts, aggregate, old)
            aggregated = True
        return aggregated or self._late()


class SessionAggregate(WindowedAggregate):
    """Sessions: a record joins (and merges) every session of its key within the inactivity
    gap of it. As in Kafka Streams, each session merged into the new one is removed (and, with
    emit="update", forwarded as a tombstone) before the merged session is written."""

    __slots__ = ("gap_ms", "merger")

    def __init__(
        self,
        name: str,
        store: WindowedStore,
        windows: SessionWindows,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        merger: Callable[[Any, Any, Any], Any],
        context: RecordContext,
        retry: Retry | None,
        *,
        clock: StreamClock,
        emit_final: bool,
        retention_ms: int,
    ) -> None:
        super().__init__(
            name,
            store,
            initializer,
            aggregator,
            context,
            retry,
            clock=clock,
            grace_ms=windows.grace_ms,
            delay_ms=windows.grace_ms + windows.inactivity_gap_ms,
            emit_final=emit_final,
            retention_ms=retention_ms,
        )
        self.gap_ms = windows.inactivity_gap_ms
        self.merger = merger

    end_exclusive = False

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            raise NullKeyError(self.name)
        if value is None:
            return False
        store = self.store
        timestamp = self.context.timestamp
        gap = self.gap_ms
        data_key = store.key_bytes(key)
        # Closed sessions (final, maybe emitted) are never merged again: a record near one starts
        # a session of its own, as in Kafka Streams.
        open_from = self.clock.stream_time - self.delay_ms
        merged = [
            w
            for w in store.windows_of(data_key)
            if w.end >= timestamp - gap and w.start <= timestamp + gap and w.end >= open_from
        ]
        start = min([timestamp, *(w.start for w in merged)])
        end = max([timestamp, *(w.end for w in merged)])
        if end < open_from:
            return self._late()
        aggregate = self._initial()
        max_ts = timestamp
        for window in merged:
            aggregate = self._merge(key, aggregate, self._read(window, key))
            max_ts = max(max_ts, window.max_timestamp)
        aggregate = self._add(key, value, aggregate)
        if start != timestamp or end != timestamp:
            # Merged away (a session equal to the record's own is simply overwritten); each is
            # retracted with its own end as the tombstone's timestamp.
            for window in sorted(merged, key=lambda w: (w.end, w.start)):
                store.remove(data_key, window.start, window.end)
                if not self.emit_final:
                    old = self._old(window.aggregate, key)
                    self._emit(key, window.start, window.end, window.end, None, old)
        self._write(key, data_key, start, end, max_ts, aggregate, True)
        if not self.emit_final:
            self._emit(key, start, end, max_ts, aggregate)
        return True

    def _merge(self, key: Any, aggregate: Any, other: Any) -> Any:
        if aggregate is _NOTHING:
            return other
        try:
            return self.merger(key, aggregate, other)
        except Exception as e:
            return self.recover(e, self.merger, key, aggregate, other)
