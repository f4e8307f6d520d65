"""Windows as the query API reads them: the window entries of a window or session store, which of
them a time range selects, and pages of them gathered from several tasks.

A windowed store keeps its windows in one column family (`processor.state.window_store`, whose
helpers for the layout this module uses); the query API reads only its window entries,

    b"W" + len(key) (4 bytes) + key + start (8) + end (8)  ->  max record ts (8) + aggregate

(big-endian, unsigned), and skips every other kind of entry (index, meta, sliding records). So
the windows of one key are one range scan, ordered by start then end, and a whole store's
windows come in the order of their stored keys: by key length, key bytes, start, end. That
order is the same on every task, which is what lets parts read on several instances be merged.

Which windows a time range `[from_ms, to_ms]` (both inclusive) selects, as Kafka Streams'
`fetch(key, timeFrom, timeTo)` and `findSessions(key, earliestSessionEndTime,
latestSessionStartTime)` do:

- window stores (tumbling, hopping, sliding): the windows whose START is in the range;
- session stores: the sessions overlapping the range: `end >= from_ms and start <= to_ms`.

Pages. A page (`Part`) holds every selected window of its tasks whose stored key is after the
cursor and at most `horizon` (None: to the end). A task's part stops at `limit` windows, or
after `MAX_SCANNED` entries looked at (a narrow time range over a large store), and its horizon
is then where it stopped; `combine` merges parts into one page with the same guarantee, so the
next page starts after the horizon and no window is skipped or repeated.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from processor.query.render import render
from processor.serdes import Serde
from processor.state.backend import TaskStateBackend
from processor.state.window_store import WINDOW, key_prefix, parse_window_key

__all__ = [
    "MAX_SCANNED",
    "MAX_TIME_MS",
    "LayoutError",
    "Part",
    "TimeRange",
    "Window",
    "combine",
    "decode",
    "read_part",
    "render_page",
]

_AFTER_WINDOWS = bytes([WINDOW[0] + 1])  # the end of every scan of windows
MAX_TIME_MS = 2**63 - 1
"""The largest time a query takes (Java's Long.MAX_VALUE, what Kafka Streams' clients send)."""
MAX_SCANNED = 50_000
"""Entries one task's part looks at before it stops with a horizon: a page of a narrow time
range over a large store costs a bounded scan, and the client asks for the next page."""


class LayoutError(ValueError):
    """A stored entry is not a window entry of the layout: a store this module cannot read."""


@dataclass(frozen=True)
class Window:
    """One window entry, decoded: the key's bytes, the bounds, the largest record timestamp
    and the aggregate's bytes."""

    key: bytes
    start_ms: int
    end_ms: int
    timestamp_ms: int
    value: bytes

    def render(self, key_serde: Serde[Any], value_serde: Serde[Any]) -> dict[str, Any]:
        """What the API shows for it: the key and the value as their serdes read them."""
        return {
            "key": render(key_serde, self.key),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "value": render(value_serde, self.value),
            "timestamp_ms": self.timestamp_ms,
        }


def decode(stored_key: bytes, stored_value: bytes) -> Window:
    """The window an entry holds; LayoutError when it is not a window entry."""
    length = int.from_bytes(stored_key[1:5], "big")
    if stored_key[:1] != WINDOW or len(stored_key) != 5 + length + 16 or len(stored_value) < 8:
        raise LayoutError(
            f"stored entry {stored_key[:40].hex()}... is not a window entry "
            "(b'W' + 4-byte key length + key + start + end -> max timestamp + aggregate)"
        )
    key, start_ms, end_ms = parse_window_key(stored_key)
    timestamp_ms = int.from_bytes(stored_value[:8], "big")
    return Window(key, start_ms, end_ms, timestamp_ms, stored_value[8:])


@dataclass(frozen=True)
class TimeRange:
    """The windows `[from_ms, to_ms]` selects in a store of `kind` ("window" or "session"), by
    the rules in the module docstring."""

    from_ms: int
    to_ms: int
    kind: str

    def __post_init__(self) -> None:
        if not 0 <= self.from_ms <= self.to_ms <= MAX_TIME_MS:
            raise ValueError(
                f"from_ms {self.from_ms} and to_ms {self.to_ms} must satisfy "
                f"0 <= from_ms <= to_ms <= {MAX_TIME_MS}"
            )
        if self.kind not in ("window", "session"):
            raise ValueError(f"kind must be 'window' or 'session', got {self.kind!r}")

    def selects(self, start_ms: int, end_ms: int) -> bool:
        if self.kind == "session":
            return end_ms >= self.from_ms and start_ms <= self.to_ms
        return self.from_ms <= start_ms <= self.to_ms

    def bounds(self, key: bytes | None) -> tuple[bytes, bytes]:
        """The stored keys `low <= k < high` holding every window it selects: of `key`, or of
        every key (None). Within them `selects` still decides (sessions; other keys)."""
        if key is None:
            return WINDOW, _AFTER_WINDOWS
        prefix = key_prefix(key)
        low = prefix + (self.from_ms if self.kind == "window" else 0).to_bytes(8, "big")
        return low, prefix + (self.to_ms + 1).to_bytes(8, "big")


@dataclass(frozen=True)
class Part:
    """Every selected window of some tasks with a stored key after the page's cursor and at
    most `horizon` (None: no bound), in stored-key order, as (stored key, stored value)."""

    entries: list[tuple[bytes, bytes]]
    horizon: bytes | None


def read_part(
    backend: TaskStateBackend,
    store: str,
    low: bytes,
    high: bytes,
    selected: TimeRange,
    limit: int,
    *,
    max_scanned: int = MAX_SCANNED,
) -> Part:
    """One task's part: the first `limit` windows `selected` with `low <= stored key < high`,
    looking at no more than `max_scanned` entries."""
    entries: list[tuple[bytes, bytes]] = []
    low, high = max(low, WINDOW), min(high, _AFTER_WINDOWS)
    if low >= high:  # a cursor past the range: nothing left
        return Part(entries, None)
    scan = backend.range(store, low, high)
    for scanned, (stored_key, stored_value) in enumerate(scan, start=1):
        window = decode(stored_key, stored_value)
        if selected.selects(window.start_ms, window.end_ms):
            entries.append((stored_key, stored_value))
            if len(entries) == limit:
                return Part(entries, stored_key)
        if scanned == max_scanned:
            return Part(entries, stored_key)
    return Part(entries, None)


def combine(parts: Sequence[Part], limit: int) -> Part:
    """One page of the parts of different tasks, at most `limit` windows: each part's
    guarantee holds up to the lowest horizon, so the page ends there (or at its `limit`th
    window)."""
    horizons = [p.horizon for p in parts if p.horizon is not None]
    horizon = min(horizons) if horizons else None
    entries: list[tuple[bytes, bytes]] = []
    for entry in heapq.merge(*(p.entries for p in parts)):
        if horizon is not None and entry[0] > horizon:
            break
        entries.append(entry)
        if len(entries) == limit:
            return Part(entries, entry[0])
    return Part(entries, horizon)


def render_page(page: Part, key_serde: Serde[Any], value_serde: Serde[Any]) -> list[dict[str, Any]]:
    """The windows of `page` as the API shows them (`Window.render`)."""
    return [decode(k, v).render(key_serde, value_serde) for k, v in page.entries]
