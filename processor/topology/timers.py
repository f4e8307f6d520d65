"""Timers, ticks and expiry: what a task does when its stream time or the wall clock reaches a
point, with no record to process.

`ProcessTimers` serves one `process()` operator: per-key timers kept in its timer store
(`processor.state.timer_store`), fired in order of time, then key bytes, then name, and its
periodic `on_tick`. `ExpiryPass` serves one store with a TTL (`processor.state.ttl_store`):
it removes the keys whose time has come and calls the store's expiry handler for each.

Both listen to the task's `StreamClock`: on stream time (checked after each record) and on the
wall clock (checked once per pass of the worker's loop). A pass does at most `FIRINGS_PER_PASS`
firings, then says it is still due, so a large backlog drains across passes and commits.

A function that fires has no current record: the task's record context carries the timer's time
(stream clock: its `at_ms`; wall clock: the wall clock) and no headers, so what it forwards is
stamped with that time. What it raises becomes a `TimerError` for the processing error handler,
naming the operator, key, timer and time; the timer is gone by then (deleted before the call),
so under skip or dead_letter it does not fire again, and under fail its deletion is not committed.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from processor.errors import TopologyError
from processor.serdes import Serde
from processor.topology.clock import CLOCKS, NEVER, STREAM, WALL, StreamClock
from processor.topology.context import _NO_KEY
from processor.topology.handling import RECORD_ERRORS
from processor.topology.record import OperatorError, RecordContext, TimerError

if TYPE_CHECKING:
    from processor.topology.stateful import ProcessProcessor


class TimerStore(Protocol):
    """What timers need of their store (`processor.state.timer_store.TimerStore`)."""

    key_serde: Serde[Any]

    def set(self, key: bytes, name: str, clock: bytes, at: int) -> None: ...
    def cancel(self, key: bytes, name: str) -> None: ...
    def next_due(self, clock: bytes) -> int | None: ...
    def take_due(self, clock: bytes, now: int) -> Generator[tuple[bytes, str, int], None, None]: ...


@runtime_checkable
class ExpiringStore(Protocol):
    """A store whose keys expire (`processor.state.ttl_store.TtlKeyValueStore`)."""

    ttl_ms: int
    clock: bytes
    now: Callable[[], int]
    wake: Callable[[int], None]
    due_at: int
    on_expired: Callable[[bytes, bytes], None] | None

    def expire(self, now: int, limit: int) -> int: ...
    def next_due(self) -> int | None: ...
    def expires_at(self, data: bytes) -> int: ...
    def key_of(self, data: bytes) -> Any: ...
    def value_of(self, data: bytes, key: object = None) -> Any: ...


FIRINGS_PER_PASS = 10_000
"""The most timers (or expired keys) one pass fires before letting the task go on."""

# Counts each firing: (outcome,) -> None; the task's accounting, or nothing.
FiringCounter = Callable[[str], None]


def _no_count(outcome: str) -> None:
    pass


def _check_time(at_ms: object) -> int:
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or at_ms < 0:
        raise ValueError(f"a timer's time must be an int of milliseconds >= 0, not {at_ms!r}")
    return at_ms


class ProcessTimers:
    """The timers and ticks of one `process()` operator."""

    def __init__(
        self,
        processor: ProcessProcessor,
        clock: StreamClock,
        *,
        store: TimerStore | None,
        on_timer: Callable[..., Any] | None,
        on_tick: Callable[..., Any] | None,
        every_ms: int,
        tick_clock: str,
        count: FiringCounter = _no_count,
    ) -> None:
        self._processor = processor
        self._record: RecordContext = processor.context
        self._clock = clock
        self._store = store
        self._on_timer = on_timer
        self._on_tick = on_tick
        self._every_ms = every_ms
        self._tick_on_wall = tick_clock == "wall"
        self._count = count
        # The next tick: on the wall clock, from now; on stream time, at the first multiple of
        # every_ms past the stream time the first pass sees (NO_TIME: not anchored yet).
        self._next_tick = NEVER
        if on_tick is not None and every_ms > 0:
            self._next_tick = clock.wall_clock() + every_ms if self._tick_on_wall else 0
        # What this operator last told the clock it has due next, per clock.
        self._due = {STREAM: self._first(STREAM), WALL: self._first(WALL)}
        clock.register(self, self._due[STREAM])
        clock.register_wall(self, self._due[WALL])

    # -- what a context calls --------------------------------------------------------------

    def set_timer(self, key: Any, at_ms: int, clock: str, name: str) -> None:
        # Once per record in a typical operator: the checks inline, the common case first.
        store = self._store
        if store is None or self._on_timer is None:
            store = self._timer_store()  # raises
        kind = CLOCKS.get(clock)
        if kind is None:
            raise ValueError(f'a timer\'s clock is "stream" or "wall", not {clock!r}')
        if at_ms.__class__ is not int or at_ms < 0:
            _check_time(at_ms)
        key_bytes = store.key_serde.serialize(key)  # what _key_bytes does, inline
        if key_bytes is None:
            raise ValueError("timers are per key, and this record's key is None")
        store.set(bytes(key_bytes), name, kind, at_ms)
        self._processor.reached = True  # the record changed state: it is not dropped
        if at_ms < self._due[kind]:
            self._due[kind] = at_ms
            if kind is STREAM:
                self._clock.expect(self, at_ms)
            else:
                self._clock.expect_wall(self, at_ms)

    def cancel_timer(self, key: Any, name: str) -> None:
        store = self._timer_store()
        store.cancel(self._key_bytes(store, key), name)
        self._processor.reached = True

    # -- what the clock calls --------------------------------------------------------------

    def on_stream_time(self, stream_time: int) -> int:
        return self._pass(STREAM, stream_time, stream_time)

    def on_wall_time(self, wall_ms: int) -> int:
        return self._pass(WALL, wall_ms, wall_ms)

    def _pass(self, kind: bytes, now: int, stamp: int) -> int:
        try:
            fired = 0
            if self._store is not None and self._on_timer is not None:
                fired = self._fire_timers(kind, now)
                if fired >= FIRINGS_PER_PASS:
                    self._due[kind] = now  # more are due: the clock calls again
                    return now
            if self._on_tick is not None and self._tick_on_wall == (kind is WALL):
                self._maybe_tick(now, stamp)
        except BaseException:
            # Whatever was not done is still due: be called again.
            self._due[kind] = now
            if kind is STREAM:
                self._clock.expect(self, now)
            else:
                self._clock.expect_wall(self, now)
            raise
        self._due[kind] = self._first(kind)
        return self._due[kind]

    def _fire_timers(self, kind: bytes, now: int) -> int:
        store, on_timer = self._store, self._on_timer
        assert store is not None and on_timer is not None
        # What `_call` does, inline: once per firing.
        processor = self._processor
        record = self._record
        context = processor.processor_context
        deserialize = store.key_serde.deserialize
        count = self._count
        stream = kind is STREAM
        fired = 0
        due = store.take_due(kind, now)
        for key_bytes, name, at in due:
            stamp = at if stream else now
            record.topic, record.offset, record.timestamp, record.headers = "", -1, stamp, None
            key = deserialize(key_bytes)
            context._key = key
            try:
                on_timer(context, key, at, name)
            except Exception as e:
                args = (context, key, at, name)
                what = f"timer {name!r}"
                raise _as_timer_error(processor, e, on_timer, args, key_bytes, what, stamp) from e
            finally:
                context._key = _NO_KEY
            count("fired")
            fired += 1
            if fired >= FIRINGS_PER_PASS:
                due.close()
                break
        return fired

    def _maybe_tick(self, now: int, stamp: int) -> None:
        every = self._every_ms
        if self._tick_on_wall:
            if now < self._next_tick:
                return
            self._next_tick = now + every
        else:
            anchored = self._next_tick > 0
            if anchored and now < self._next_tick:
                return
            self._next_tick = (now // every + 1) * every
            if not anchored:
                return
        assert self._on_tick is not None
        self._call(self._on_tick, None, None, stamp, None)
        self._count("fired")

    def _call(
        self,
        function: Callable[..., Any],
        key: Any,
        key_bytes: bytes | None,
        stamp: int,
        timer: tuple[int, str] | None,
    ) -> None:
        """Call `function` as a firing: (ctx, key, at, name) for a timer, (ctx) for a tick."""
        processor = self._processor
        record = self._record
        record.topic, record.offset, record.timestamp, record.headers = "", -1, stamp, None
        context = processor.processor_context
        context._key = key if key_bytes is not None else _NO_KEY
        args: tuple[Any, ...] = (context, key, *timer) if timer is not None else (context,)
        try:
            function(*args)
        except Exception as e:
            what = "tick" if timer is None else f"timer {timer[1]!r}"
            raise _as_timer_error(processor, e, function, args, key_bytes, what, stamp) from e
        finally:
            context._key = _NO_KEY

    def _first(self, kind: bytes) -> int:
        """When this operator next has something due on the clock `kind`."""
        first = NEVER
        if self._store is not None and self._on_timer is not None:
            at = self._store.next_due(kind)
            if at is not None:
                first = at
        if self._on_tick is not None and self._tick_on_wall == (kind is WALL):
            first = min(first, self._next_tick)
        return first

    def _timer_store(self) -> TimerStore:
        if self._store is None or self._on_timer is None:
            raise TopologyError(
                "set_timer()/cancel_timer() need a timer function: give this process() "
                "on_timer=fn(ctx, key, at_ms, name)"
            )
        return self._store

    @staticmethod
    def _key_bytes(store: TimerStore, key: Any) -> bytes:
        data = store.key_serde.serialize(key)
        if data is None:
            raise ValueError("timers are per key, and this record's key is None")
        return bytes(data)


def _as_timer_error(
    processor: ProcessProcessor,
    error: Exception,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    key_bytes: bytes | None,
    what: str,
    at: int,
) -> Exception:
    """What a firing's function raising `error` raises: errors of operators downstream as they
    are; this operator's own (after its retries) as a `TimerError`."""
    if isinstance(error, processor.not_mine):
        return error
    try:
        processor.recover(error, function, *args)
    except OperatorError as failed:
        if failed.node != processor.name:
            return failed
        return TimerError(processor.name, failed.cause, key_bytes, what, at)
    except Exception as other:
        return other
    return error  # a retry succeeded: raised as it was, the firing is not done again


class ExpiryPass:
    """Removes the expired keys of one store with a TTL, when its clock reaches their time."""

    def __init__(self, store: ExpiringStore, clock: StreamClock) -> None:
        self._store = store
        self._clock = clock
        self._on_wall = store.clock is WALL
        store.now = clock.wall_clock if self._on_wall else self._stream_time
        store.wake = self._expect
        first = store.next_due()
        store.due_at = NEVER if first is None else first
        if self._on_wall:
            clock.register_wall(self, store.due_at)
        else:
            clock.register(self, store.due_at)

    def _stream_time(self) -> int:
        return self._clock.stream_time

    def on_stream_time(self, stream_time: int) -> int:
        return self._pass(stream_time)

    def on_wall_time(self, wall_ms: int) -> int:
        return self._pass(wall_ms)

    def _pass(self, now: int) -> int:
        store = self._store
        store.due_at = now  # writes made meanwhile expire later: no need to wake
        try:
            if store.expire(now, FIRINGS_PER_PASS) >= FIRINGS_PER_PASS:
                return now
        except BaseException:
            self._expect(now)
            raise
        first = store.next_due()
        store.due_at = NEVER if first is None else first
        return store.due_at

    def _expect(self, at: int) -> None:
        if self._on_wall:
            self._clock.expect_wall(self, at)
        else:
            self._clock.expect(self, at)


# What an expiry does with each key: (key bytes, key, last value, expiry time).
ExpiryAction = Callable[[bytes, Any, Any, int], None]


def expiry_handler(
    store: ExpiringStore,
    record: RecordContext,
    clock: StreamClock,
    act: ExpiryAction,
) -> Callable[[bytes, bytes], None]:
    """What `store` calls for each key it expires: `act(...)` with the record context stamped
    with the expiry time (the wall clock for a wall-clock TTL) and no headers; the context of a
    record being processed (a write found the key expired) is put back after."""

    def expired(key_bytes: bytes, data: bytes) -> None:
        saved = (record.topic, record.offset, record.timestamp, record.headers)
        at = store.expires_at(data)
        stamp = clock.wall_clock() if store.clock is WALL else at
        record.topic, record.offset, record.timestamp, record.headers = "", -1, stamp, None
        try:
            act(key_bytes, store.key_of(key_bytes), store.value_of(data, key_bytes), stamp)
        finally:
            record.topic, record.offset, record.timestamp, record.headers = saved

    return expired


def process_expiry_action(
    processor: ProcessProcessor,
    store_name: str,
    on_expire: Callable[..., Any],
    count: FiringCounter = _no_count,
) -> ExpiryAction:
    """A `process()` operator's `on_expire(ctx, store_name, key, last_value)` as an expiry
    action, counted as a firing: its errors are `TimerError`s naming the store's expiry."""

    def act(key_bytes: bytes, key: Any, value: Any, at: int) -> None:
        context = processor.processor_context
        saved, context._key = context._key, key
        args = (context, store_name, key, value)
        try:
            on_expire(*args)
        except Exception as e:
            what = f"expiry of {store_name!r}"
            raise _as_timer_error(processor, e, on_expire, args, key_bytes, what, at) from e
        finally:
            context._key = saved
        count("fired")

    return act


# Handles what a firing raised: (error, topic, offset) of the record that moved time.
FiringFailed = Callable[[Exception, str, int], None]

_MAX_FAILED_PER_PASS = 1_000


def fire_events(
    clock: StreamClock,
    record: RecordContext,
    topic: str,
    offset: int,
    *,
    wall: bool,
    failed: FiringFailed,
) -> None:
    """Let the listeners of `clock` act on stream time (and, with `wall`, on the wall clock);
    each error of one of `RECORD_ERRORS` goes to `failed` (which raises under the fail handler)
    and the listeners go on (a failed firing is consumed)."""
    for _ in range(_MAX_FAILED_PER_PASS):
        record.topic, record.offset, record.headers = topic, offset, None
        try:
            if clock.stream_time >= clock.due_at:
                clock.fire()
            if wall:
                now = clock.wall_clock()
                if now >= clock.wall_due_at:
                    clock.fire_wall(now)
            return
        except RECORD_ERRORS as e:
            failed(e, topic, offset)
