"""The four kinds of windows, as a topology declares them, and the pure arithmetic of time
windows: which windows a timestamp falls in, when a window closes.

Every window has a last millisecond (`last_ms`, inclusive): for tumbling and hopping windows
`end_ms - 1` (their end is exclusive), for sliding windows `start_ms + max_difference_ms`, for
sessions the timestamp of their last record. A window is closed once stream time is past its last
millisecond plus the grace period (`is_closed`), as in Kafka Streams; a record whose windows are
all closed is late.

>>> TumblingWindows(size_ms=60_000).starts_of(125_000)
[120000]
>>> HoppingWindows(size_ms=60_000, advance_ms=20_000).starts_of(125_000)
[80000, 100000, 120000]
>>> is_closed(last_ms=179_999, grace_ms=5_000, stream_time=185_000)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from processor.errors import TopologyError

K = TypeVar("K")

DEFAULT_RETENTION_MARGIN_MS = 24 * 60 * 60 * 1000
"""How much longer than a windowed store's retention its changelog keeps records: a day, as Kafka
Streams' `windowstore.changelog.additional.retention.ms`. Changelog records carry the wall-clock
time they were written, and the broker deletes by that time, while windows expire by stream time;
the margin covers stream time running behind the wall clock."""


@dataclass(frozen=True, slots=True)
class Windowed(Generic[K]):
    """A key and the window its aggregate belongs to. For tumbling and hopping windows `end_ms` is
    exclusive (`start_ms + size`); for sliding windows and sessions it is inclusive."""

    key: K
    start_ms: int
    end_ms: int

    def __str__(self) -> str:
        return f"{self.key}@{self.start_ms}/{self.end_ms}"


def _check(what: str, name: str, value: int, *, positive: bool) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TopologyError(f"{what}: {name} must be an int of milliseconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise TopologyError(f"{what}: {name} must be {bound}, got {value}")


@dataclass(frozen=True)
class HoppingWindows:
    """Windows of `size_ms` starting every `advance_ms` (at multiples of it, from 0); a record is
    in every window that contains its timestamp. Records up to `grace_ms` late are still
    counted."""

    size_ms: int
    advance_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        what = type(self).__name__
        _check(what, "size_ms", self.size_ms, positive=True)
        _check(what, "advance_ms", self.advance_ms, positive=True)
        _check(what, "grace_ms", self.grace_ms, positive=False)
        if self.advance_ms > self.size_ms:
            raise TopologyError(
                f"{what}: advance_ms ({self.advance_ms}) must not exceed size_ms ({self.size_ms}),"
                " or some records would fall in no window"
            )

    def starts_of(self, timestamp: int) -> list[int]:
        """The starts of the windows containing `timestamp`, oldest first."""
        return _starts_of(timestamp, self.size_ms, self.advance_ms)

    @property
    def default_retention_ms(self) -> int:
        return self.size_ms + self.grace_ms


@dataclass(frozen=True)
class TumblingWindows:
    """Windows of `size_ms` that do not overlap (starting at multiples of it, from 0): each
    record is in exactly one. Records up to `grace_ms` late are still counted."""

    size_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        what = type(self).__name__
        _check(what, "size_ms", self.size_ms, positive=True)
        _check(what, "grace_ms", self.grace_ms, positive=False)

    @property
    def advance_ms(self) -> int:
        return self.size_ms

    def starts_of(self, timestamp: int) -> list[int]:
        return [timestamp - timestamp % self.size_ms]

    @property
    def default_retention_ms(self) -> int:
        return self.size_ms + self.grace_ms


def _starts_of(timestamp: int, size: int, advance: int) -> list[int]:
    # Windows [start, start + size) containing timestamp: starts that are multiples of advance,
    # at least 0, in (timestamp - size, timestamp].
    lowest = timestamp - size + 1
    first = max(0, -(-lowest // advance) * advance)
    return list(range(first, timestamp - timestamp % advance + 1, advance))


@dataclass(frozen=True)
class SlidingWindows:
    """Kafka Streams' sliding windows: a window for every distinct set of records no more than
    `max_difference_ms` apart. A window's bounds are both inclusive:
    `[start_ms, start_ms + max_difference_ms]`; windows exist only where records are."""

    max_difference_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        what = type(self).__name__
        _check(what, "max_difference_ms", self.max_difference_ms, positive=True)
        _check(what, "grace_ms", self.grace_ms, positive=False)

    @property
    def default_retention_ms(self) -> int:
        return self.max_difference_ms + self.grace_ms


@dataclass(frozen=True)
class SessionWindows:
    """Per key, records no more than `inactivity_gap_ms` apart form one session; a record that
    bridges two sessions merges them. A session's `end_ms` is its last record's timestamp."""

    inactivity_gap_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        what = type(self).__name__
        _check(what, "inactivity_gap_ms", self.inactivity_gap_ms, positive=True)
        _check(what, "grace_ms", self.grace_ms, positive=False)

    @property
    def default_retention_ms(self) -> int:
        return self.inactivity_gap_ms + self.grace_ms


@dataclass(frozen=True)
class JoinWindows:
    """Which records of two joined streams match: a right record matches a left one of the same
    key when `left.ts - before_ms <= right.ts <= left.ts + after_ms`. A record's window closes
    when stream time passes its end (left: `ts + after_ms`, right: `ts + before_ms`) plus
    `grace_ms`; a record arriving after that is late. Both sides are kept for `retention_ms`
    (`before_ms + after_ms + grace_ms`), until no record that is not late can match them.

    >>> JoinWindows.of(5_000, grace_ms=1_000)
    JoinWindows(before_ms=5000, after_ms=5000, grace_ms=1000)
    >>> JoinWindows(before_ms=600_000, after_ms=0).retention_ms
    600000
    """

    before_ms: int
    after_ms: int
    grace_ms: int = 0

    def __post_init__(self) -> None:
        what = type(self).__name__
        _check(what, "before_ms", self.before_ms, positive=False)
        _check(what, "after_ms", self.after_ms, positive=False)
        _check(what, "grace_ms", self.grace_ms, positive=False)

    @classmethod
    def of(cls, difference_ms: int, *, grace_ms: int = 0) -> JoinWindows:
        """Records at most `difference_ms` apart, either way, match."""
        return cls(before_ms=difference_ms, after_ms=difference_ms, grace_ms=grace_ms)

    @property
    def retention_ms(self) -> int:
        return self.before_ms + self.after_ms + self.grace_ms


TimeWindows = TumblingWindows | HoppingWindows
"""Windows of a fixed size at fixed starts."""

Windows = TumblingWindows | HoppingWindows | SlidingWindows | SessionWindows
"""Any window specification `windowed_by` takes."""


def is_closed(*, last_ms: int, grace_ms: int, stream_time: int) -> bool:
    """A window whose last millisecond is `last_ms` takes no more records."""
    return stream_time > last_ms + grace_ms
