"""Sliding windows, with Kafka Streams' semantics: a window `[start, start + max_difference]`
(both bounds inclusive) for every distinct set of a key's records no more than `max_difference`
apart. Windows exist only where records are: each record at `t` has a left window starting at
`max(0, t - max_difference)` and, when a later record is within `max_difference + 1` of it, a
right window starting at `t + 1`.

A new window's aggregate is folded from the key's records it covers, which the store keeps (in
timestamp order) until no open window can need them; windows that already exist take the record
incrementally. A window is closed once stream time passes its end plus grace; a record whose
windows are all closed, and that could not start an open one, is late.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processor.serdes import Serde
from processor.topology.clock import StreamClock
from processor.topology.record import NullKeyError, RecordContext
from processor.topology.retry import Retry
from processor.topology.windowed import WindowedAggregate, WindowedStore
from processor.windows.spec import SlidingWindows


class SlidingAggregate(WindowedAggregate):
    __slots__ = ("difference_ms", "input_serde")

    def __init__(
        self,
        name: str,
        store: WindowedStore,
        windows: SlidingWindows,
        initializer: Callable[[], Any] | None,
        aggregator: Callable[[Any, Any, Any], Any],
        context: RecordContext,
        retry: Retry | None,
        *,
        clock: StreamClock,
        emit_final: bool,
        retention_ms: int,
        input_serde: Serde[Any],
    ) -> None:
        difference = windows.max_difference_ms
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
            # A record is needed until the last window that may cover it closes.
            retention_ms=max(retention_ms, difference + windows.grace_ms),
        )
        self.difference_ms = difference
        self.input_serde = input_serde

    end_exclusive = False

    def process(self, key: Any, value: Any) -> bool:
        if key is None:
            raise NullKeyError(self.name)
        if value is None:
            return False
        store = self.store
        timestamp = self.context.timestamp
        difference = self.difference_ms
        open_from = self.clock.stream_time - self.grace_ms  # windows ending before are closed
        if timestamp + difference < open_from:
            # The window starting at the record is closed, so is every window holding it: late
            # (and, as in Kafka Streams, it does not start the right window after it either).
            return self._late()
        data_key = store.key_bytes(key)
        existing = {
            w.start: w
            for w in store.windows_of(data_key)
            if timestamp - difference - 1 <= w.start <= timestamp + 1
        }
        previous = max(
            (t for t, _ in store.records(data_key, timestamp - difference - 1, timestamp - 1)),
            default=None,
        )
        later = store.records(data_key, timestamp + 1, timestamp + 1 + difference)
        has_next = next(later, None) is not None
        created = [max(0, timestamp - difference)]
        if previous is not None:
            created.append(previous + 1)
        if has_next:
            created.append(timestamp + 1)
        new_starts = sorted(
            s for s in set(created) if s not in existing and s + difference >= open_from
        )
        updated = sorted(
            s
            for s, w in existing.items()
            if s <= timestamp <= s + difference and s + difference >= open_from
        )
        # Not late: kept even when it changes no window yet, for the windows later records make.
        encoded = self.input_serde.serialize(value)
        assert encoded is not None
        store.add_record(data_key, timestamp, encoded)
        results: dict[int, tuple[int, Any, bytes | None]] = {}
        for start in updated:
            window = existing[start]
            aggregate = self._add(key, value, self._read(window, key))
            max_ts = max(window.max_timestamp, timestamp)
            self._write(key, data_key, start, start + difference, max_ts, aggregate, False)
            results[start] = (max_ts, aggregate, window.aggregate)
        for start in new_starts:
            max_ts, aggregate = self._fold(key, data_key, start)
            self._write(key, data_key, start, start + difference, max_ts, aggregate, True)
            results[start] = (max_ts, aggregate, None)
        if not self.emit_final:
            for start in sorted(results):
                max_ts, aggregate, before = results[start]
                old = self._old(before, key)
                self._emit(key, start, start + difference, max_ts, aggregate, old)
        return True

    def _fold(self, key: Any, data_key: bytes, start: int) -> tuple[int, Any]:
        """(largest timestamp, aggregate) of the key's records in the window at `start`."""
        aggregate = self._initial()
        max_ts = start
        for timestamp, data in self.store.records(data_key, start, start + self.difference_ms):
            aggregate = self._add(key, self.input_serde.deserialize(data), aggregate)
            max_ts = max(max_ts, timestamp)
        return max_ts, aggregate
