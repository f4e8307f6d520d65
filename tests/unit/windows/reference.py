"""A brute-force reference for windowed aggregations, written from the semantics of issue 15
(/work/notes/windows-design.md, as aligned with Kafka Streams' TopologyTestDriver in
/work/notes/ks-semantics.md), not from any incremental algorithm.

`run(spec, records, ...)` replays the input records one at a time. After each record it
recomputes the windows out of the records accepted so far (time and sliding windows from
scratch; sessions by merging the record's explicit record set into the open sessions near it),
compares with the windows before that record, and derives what the operator must emit for it:

- stream time is the largest timestamp of any record so far (late ones and null values too),
  or, with idle advance, the stream time at the last record plus the wall-clock time since it
  once that is at least `idle_advance_ms` (`Idle` events move the wall clock);
- a record is late when the windows it would go to are closed at the stream time after it
  (per kind, below); late records and null values are never aggregated;
- `emit="update"`: for each record, every window whose records changed, with its new aggregate;
  for sessions, first a tombstone `(window, None)` for every session the record merged (Kafka
  Streams removes and re-writes them, even one with unchanged bounds), except when the merged
  session is just [ts, ts];
- `emit="final"`: for each record, every window that became closed at that stream time, in the
  order (last_ms, start, key bytes) (Kafka Streams' emit order);
- every result carries the largest record timestamp of its window (a tombstone: of the removed
  session).

Nothing here is incremental or clever: windows are enumerated by brute force and aggregates are
folds over the window's records in arrival order. It is slow (quadratic and worse) on purpose;
inputs in the tests are a few dozen records.

Rules per kind (`last_ms` = a window's last inclusive millisecond):

- Tumbling / hopping: windows start at k * advance >= 0 with start <= ts < start + size;
  `end_ms = start + size`, `last_ms = end - 1`. A window is closed once
  `stream_time > last_ms + grace`. A record joins each of its windows that is open when it
  arrives (a hopping record with some windows closed joins only the open ones, and is not late).
- Sliding (Kafka Streams' semantics): for each accepted record time t a window starting at
  max(0, t - d), and one starting at t + 1 when some accepted record lies in [t + 1, t + 1 + d];
  a window holds the records with start <= ts <= start + d; `end_ms = last_ms = start + d`.
  An open window holds every accepted record in its range; a closed window keeps what it had
  when it closed (and a window that did not exist before it closed never comes to exist).
  A record is late when the last window that could hold it, [t, t + d], is closed (Kafka
  Streams: t + d < stream time - grace); a late record defines no window. A record that is not
  late but whose own left window is closed ("semi-late") is in every open window covering it,
  also ones that later records define: the definition above, a deliberate difference from
  Kafka Streams, which keeps windows rather than records and leaves it out of windows it
  creates later.
- Sessions: the sessions of a key are the groups of its accepted records whose consecutive
  timestamps are at most `gap` apart; `start_ms` / `end_ms` are the first / last record time
  (both inclusive), `last_ms = end`. A session is closed, and final, once
  `stream_time > end + gap + grace` (Kafka Streams' KStreamSessionWindowAggregate: close time =
  stream time - grace - gap). A record joins every open session of its key with
  `end >= ts - gap` and `start <= ts + gap` (merging them); closed sessions are never merged
  again (Kafka Streams' session store no longer returns them), so a record near one only
  starts a session of its own. The record is late when the session it ends up in is closed.
  Records that are never late (a huge grace) make the sessions the groups of a key's records
  whose consecutive timestamps are at most `gap` apart.

A window is expired (gone from the store) once `stream_time > last_ms + retention`; retention
defaults to size + grace (sliding: d + grace; sessions: gap + grace).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Emit = Literal["update", "final"]


# --- window specs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Tumbling:
    size_ms: int
    grace_ms: int = 0


@dataclass(frozen=True)
class Hopping:
    size_ms: int
    advance_ms: int
    grace_ms: int = 0


@dataclass(frozen=True)
class Sliding:
    max_difference_ms: int
    grace_ms: int = 0


@dataclass(frozen=True)
class Session:
    gap_ms: int
    grace_ms: int = 0


Spec = Tumbling | Hopping | Sliding | Session


# --- aggregations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregation:
    """A fold: `add(add(initial(), v1), v2) ...` over a window's values in arrival order."""

    name: str
    initial: Callable[[], Any]
    add: Callable[[Any, int], Any]
    commutative: bool = True


COUNT = Aggregation("count", lambda: 0, lambda agg, _value: agg + 1)
SUM = Aggregation("sum", lambda: 0, lambda agg, value: agg + value)
APPEND = Aggregation("append", lambda: [], lambda agg, value: [*agg, value], commutative=False)


# --- input and output -----------------------------------------------------------------------


class Record(NamedTuple):
    key: str
    value: int | None
    ts: int


class Idle(NamedTuple):
    """No input while the wall clock moves on by `ms` (the driver's `advance_wall_clock`)."""

    ms: int


Event = Record | Idle


class Window(NamedTuple):
    """The reference's `Windowed`: (key, start_ms, end_ms), with `end_ms` as in the design."""

    key: str
    start_ms: int
    end_ms: int


class Output(NamedTuple):
    window: Window
    value: Any  # the aggregate, or None for a session tombstone
    timestamp: int


@dataclass(frozen=True)
class Contents:
    """A window's records, as indexes into the input (in arrival order)."""

    indexes: tuple[int, ...]


@dataclass
class Result:
    outputs: list[list[Output]]
    """Per input event, what the operator emits for it, in the expected order (emit="final":
    (last_ms, start, key bytes); emit="update": session tombstones first, then windows by key
    and start)."""
    late: list[bool]
    """Per input event, whether it was a late record (dropped)."""
    stream_time: int
    store: dict[Window, tuple[Any, int]] = field(default_factory=dict)
    """The windows left after the last record that are not expired: (aggregate, max record ts)."""

    @property
    def late_count(self) -> int:
        return sum(self.late)

    def all_outputs(self) -> list[Output]:
        return [out for per_record in self.outputs for out in per_record]


# --- the reference --------------------------------------------------------------------------

NO_TIME = -1
"""Stream time before the first record (timestamps are >= 0)."""


def run(
    spec: Spec,
    events: Sequence[Event],
    *,
    emit: Emit = "update",
    aggregation: Aggregation = COUNT,
    retention_ms: int | None = None,
    idle_advance_ms: int = 0,
    key_bytes: Callable[[str], bytes] = lambda key: key.encode("utf-8"),
) -> Result:
    """What a windowed aggregation of `events` (records in arrival order, and idle wall-clock
    time) must emit, per event; see the module docstring for the rules.

    Idle advance (`idle_advance_ms` > 0): once the wall clock is `idle_advance_ms` or more past
    the last record's, stream time is at least the stream time at that record plus the wall
    time since it. Records arrive at the wall-clock time of the last `Idle` before them."""
    if not aggregation.commutative and isinstance(spec, Sliding | Session):
        raise ValueError("order-dependent aggregations are only defined for tumbling/hopping")
    retention = default_retention(spec) if retention_ms is None else retention_ms
    # Idle events as null records that are not there: never aggregated, no stream time.
    records = [e if isinstance(e, Record) else Record("", None, NO_TIME) for e in events]
    stream_time = NO_TIME
    wall = wall_at_last_record = 0
    time_at_last_record = NO_TIME
    accepted: list[int] = []  # indexes of the aggregated records
    arrival_time: dict[int, int] = {}  # index -> stream time just after it arrived
    windows: dict[Window, Contents] = {}
    retracted: list[Window] = []  # sessions a record merged (update: tombstones)
    emitted: set[Window] = set()
    result = Result(outputs=[], late=[], stream_time=NO_TIME)

    for i, event in enumerate(events):
        record = records[i]
        if isinstance(event, Idle):
            wall += event.ms
            idle = wall - wall_at_last_record
            if 0 < idle_advance_ms <= idle and time_at_last_record != NO_TIME:
                stream_time = max(stream_time, time_at_last_record + idle)
        else:
            stream_time = max(stream_time, record.ts)
        before = windows
        late = False
        retracted = []
        if record.value is None:
            pass
        elif isinstance(spec, Session):
            windows, retracted, late = _sessions_with(spec, records, before, i, stream_time)
        else:
            late = _is_late(spec, record, stream_time)
            if not late:
                accepted.append(i)
                arrival_time[i] = stream_time
            if isinstance(spec, Sliding):
                windows = _sliding_windows(spec, records, accepted, stream_time, before)
            else:
                windows = _time_windows(spec, records, accepted, arrival_time)
        if isinstance(event, Record):
            wall_at_last_record, time_at_last_record = wall, stream_time
        result.late.append(late)
        if emit == "update":
            out = _changes(records, before, windows, retracted, aggregation)
        else:
            out = _finals(spec, records, windows, emitted, stream_time, aggregation, key_bytes)
        result.outputs.append(out)

    result.stream_time = stream_time
    result.store = {
        w: (_aggregate(records, c, aggregation), _max_ts(records, c))
        for w, c in windows.items()
        if stream_time <= last_ms(spec, w) + retention
    }
    return result


def last_ms(spec: Spec, window: Window) -> int:
    """The window's last inclusive millisecond."""
    if isinstance(spec, Tumbling | Hopping):
        return window.end_ms - 1
    return window.end_ms


def default_retention(spec: Spec) -> int:
    match spec:
        case Tumbling(size_ms=size, grace_ms=grace) | Hopping(size_ms=size, grace_ms=grace):
            return size + grace
        case Sliding(max_difference_ms=d, grace_ms=grace):
            return d + grace
        case Session(gap_ms=gap, grace_ms=grace):
            return gap + grace


def _is_closed(spec: Spec, window: Window, stream_time: int) -> bool:
    """Closed: a record for it is late, and emit="final" emits it."""
    if isinstance(spec, Session):
        return stream_time > window.end_ms + spec.gap_ms + spec.grace_ms
    return stream_time > last_ms(spec, window) + spec.grace_ms


# --- which records are late -------------------------------------------------------------------


def time_windows_of(spec: Tumbling | Hopping, key: str, ts: int) -> list[Window]:
    """Every time window holding `ts`, by enumeration of all window starts up to `ts`."""
    size = spec.size_ms
    advance = spec.size_ms if isinstance(spec, Tumbling) else spec.advance_ms
    return [Window(key, s, s + size) for s in range(0, ts + 1, advance) if s <= ts < s + size]


def _is_late(spec: Tumbling | Hopping | Sliding, record: Record, stream_time: int) -> bool:
    if isinstance(spec, Tumbling | Hopping):
        return all(
            _is_closed(spec, w, stream_time) for w in time_windows_of(spec, record.key, record.ts)
        )
    # the windows that could hold t start in [t - d, t]; [t, t + d] closes last
    d = spec.max_difference_ms
    return _is_closed(spec, Window(record.key, record.ts, record.ts + d), stream_time)


# --- the windows ------------------------------------------------------------------------------


def _time_windows(
    spec: Tumbling | Hopping,
    records: Sequence[Record],
    accepted: list[int],
    arrival_time: dict[int, int],
) -> dict[Window, Contents]:
    """Each accepted record is in each of its windows that was open when it arrived."""
    members: dict[Window, list[int]] = {}
    for i in accepted:
        for w in time_windows_of(spec, records[i].key, records[i].ts):
            if not _is_closed(spec, w, arrival_time[i]):
                members.setdefault(w, []).append(i)
    return {w: Contents(tuple(indexes)) for w, indexes in members.items()}


def _sliding_windows(
    spec: Sliding,
    records: Sequence[Record],
    accepted: list[int],
    stream_time: int,
    before: dict[Window, Contents],
) -> dict[Window, Contents]:
    """The windows the accepted records define (see the module docstring); closed windows keep
    what they held before."""
    d = spec.max_difference_ms
    starts: set[tuple[str, int]] = set()
    for i in accepted:
        key, t = records[i].key, records[i].ts
        starts.add((key, max(0, t - d)))
        if any(records[j].key == key and t + 1 <= records[j].ts <= t + 1 + d for j in accepted):
            starts.add((key, t + 1))
    windows: dict[Window, Contents] = {}
    for key, start in starts:
        w = Window(key, start, start + d)
        if _is_closed(spec, w, stream_time):
            continue
        held = [
            j for j in accepted if records[j].key == key and start <= records[j].ts <= start + d
        ]
        windows[w] = Contents(tuple(held))
    for w, contents in before.items():
        if _is_closed(spec, w, stream_time):
            windows[w] = contents
    return windows


def _sessions_with(
    spec: Session,
    records: Sequence[Record],
    sessions: dict[Window, Contents],
    i: int,
    stream_time: int,
) -> tuple[dict[Window, Contents], list[Window], bool]:
    """The sessions after record `i`, the sessions it retracts, and whether it was late: it
    joins every open session of its key within the gap of it (closed ones are never merged
    again: Kafka Streams' session store no longer returns them); late when the session it ends
    up in is closed. Every session merged is retracted unless the result is just [ts, ts]."""
    record, gap = records[i], spec.gap_ms
    near = [
        w
        for w in sessions
        if w.key == record.key
        and not _is_closed(spec, w, stream_time)
        and w.end_ms >= record.ts - gap
        and w.start_ms <= record.ts + gap
    ]
    members = sorted([i, *(j for w in near for j in sessions[w].indexes)])
    times = [records[j].ts for j in members]
    merged = Window(record.key, min(times), max(times))
    if _is_closed(spec, merged, stream_time):
        return sessions, [], True
    after = {w: contents for w, contents in sessions.items() if w not in near}
    after[merged] = Contents(tuple(members))
    point = Window(record.key, record.ts, record.ts)
    return after, [] if merged == point else near, False


# --- what is emitted -------------------------------------------------------------------------


def _aggregate(records: Sequence[Record], contents: Contents, aggregation: Aggregation) -> Any:
    values = [v for i in contents.indexes if (v := records[i].value) is not None]
    assert len(values) == len(contents.indexes), "null values are never aggregated"
    return functools.reduce(aggregation.add, values, aggregation.initial())


def _max_ts(records: Sequence[Record], contents: Contents) -> int:
    return max(records[i].ts for i in contents.indexes)


def _changes(
    records: Sequence[Record],
    before: dict[Window, Contents],
    after: dict[Window, Contents],
    retracted: list[Window],
    aggregation: Aggregation,
) -> list[Output]:
    """emit="update": a tombstone per retracted session, in (end, start) order, then each window
    whose records changed, with its aggregate."""
    gone = {w for w in before if w not in after}
    if not gone <= set(retracted):
        raise AssertionError(f"windows {gone - set(retracted)} disappeared without a tombstone")
    tombstones = [
        Output(w, None, _max_ts(records, before[w]))
        for w in sorted(retracted, key=lambda w: (w.end_ms, w.start_ms))
    ]
    changed = [
        Output(w, _aggregate(records, c, aggregation), _max_ts(records, c))
        for w, c in sorted(after.items())
        if before.get(w) != c
    ]
    return tombstones + changed


def _finals(
    spec: Spec,
    records: Sequence[Record],
    windows: dict[Window, Contents],
    emitted: set[Window],
    stream_time: int,
    aggregation: Aggregation,
    key_bytes: Callable[[str], bytes],
) -> list[Output]:
    """emit="final": every window final now and not emitted before."""
    due = [w for w in windows if w not in emitted and _is_closed(spec, w, stream_time)]
    due.sort(key=lambda w: (last_ms(spec, w), w.start_ms, key_bytes(w.key)))
    emitted.update(due)
    return [
        Output(w, _aggregate(records, windows[w], aggregation), _max_ts(records, windows[w]))
        for w in due
    ]
