"""What a `Stream.process` function sees: its stores, the record's metadata, and `forward`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from processor.errors import TopologyError
from processor.topology.clock import StreamClock
from processor.topology.record import Headers, RecordContext


class Store(Protocol):
    """A key-value store as operators use it (`processor.state.typed.KeyValueStore`)."""

    name: str

    def get(self, key: Any, default: Any = None) -> Any: ...
    def put(self, key: Any, value: Any) -> None: ...
    def delete(self, key: Any) -> None: ...
    def range(self, start: Any = None, end: Any = None) -> Iterator[tuple[Any, Any]]: ...
    def all(self) -> Iterator[tuple[Any, Any]]: ...


class Timers(Protocol):
    """What a context sets and cancels timers through (`processor.topology.timers`)."""

    def set_timer(self, key: Any, at_ms: int, clock: str, name: str) -> None: ...
    def cancel_timer(self, key: Any, name: str) -> None: ...


_NO_KEY: Any = object()


class ProcessorContext:
    """Given to a `process` function with each record, and to its `on_timer`, `on_tick` and
    `on_expire` functions (which have no current record: `timestamp` is the timer's time,
    `headers` None, `topic` "" and `offset` -1)."""

    __slots__ = ("_clock", "_forward", "_key", "_record", "_stores", "_timers", "task_id")

    def __init__(
        self,
        record: RecordContext,
        stores: Mapping[str, Store],
        forward: Callable[[Any, Any], None],
        task_id: str,
        *,
        timers: Timers | None = None,
        clock: StreamClock | None = None,
    ) -> None:
        self._record = record
        self._stores = stores
        self._forward = forward
        self.task_id = task_id
        self._key: Any = _NO_KEY
        self._timers = timers
        self._clock = clock

    def store(self, name: str) -> Store:
        """A store this operator declared in `process(..., stores=[...])`."""
        try:
            return self._stores[name]
        except KeyError:
            raise TopologyError(
                f"store {name!r} was not given to this process() operator; "
                f"it has {sorted(self._stores) or 'none'}: add it to stores=[...]"
            ) from None

    def forward(self, key: Any, value: Any) -> None:
        """Send (key, value) downstream, with the current record's timestamp and headers."""
        self._forward(key, value)

    def set_timer(self, at_ms: int, clock: str = "stream", name: str = "default") -> None:
        """Set the current key's timer `name` to fire at `at_ms` on `clock` ("stream": once the
        task's stream time reaches it; "wall": once the wall clock does), replacing the key's
        timer of that name, whatever its clock. `on_timer(ctx, key, at_ms, name)` is called."""
        timers = self._timers
        if timers is None or self._key is _NO_KEY:
            timers = self._timer_key("set_timer")  # raises
        timers.set_timer(self._key, at_ms, clock, name)

    def cancel_timer(self, name: str = "default") -> None:
        """Cancel the current key's timer `name` (nothing happens when it is not set)."""
        self._timer_key("cancel_timer").cancel_timer(self._key, name)

    def _timer_key(self, method: str) -> Timers:
        if self._timers is None:
            raise TopologyError(
                f"{method}() needs a timer function: give this process() on_timer=fn(ctx, key, "
                "at_ms, name)"
            )
        if self._key is _NO_KEY:
            raise TopologyError(f"{method}() needs a current key; on_tick has none")
        return self._timers

    @property
    def key(self) -> Any:
        """The current record's key (in `on_timer` and `on_expire`: the timer's or the expired
        key; in `on_tick`: None)."""
        return None if self._key is _NO_KEY else self._key

    @property
    def wall_clock_ms(self) -> int:
        """The wall clock, in milliseconds since the epoch (the test driver's own clock in the
        driver)."""
        return self._clock.wall_clock() if self._clock is not None else int(time.time() * 1000)

    @property
    def stream_time(self) -> int:
        """The task's stream time: the largest record timestamp it has seen (-1 before any),
        what stream-clock timers and TTLs compare with."""
        return self._clock.stream_time if self._clock is not None else -1

    @property
    def topic(self) -> str:
        return self._record.topic

    @property
    def partition(self) -> int:
        return self._record.partition

    @property
    def offset(self) -> int:
        return self._record.offset

    @property
    def timestamp(self) -> int:
        return self._record.timestamp

    @property
    def headers(self) -> Headers | None:
        return self._record.headers
