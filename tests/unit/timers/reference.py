"""A brute-force reference for timers, ticks and state expiry (issue 16), written from the
semantics the issue states, not from the implementation: no index, no cursor, no cache; every
pass looks at every timer (or key) there is.

A test topology reads records whose values are lists of actions for its `process()` function;
the models here replay the same operations (`Pipe`, `AdvanceWall`, `AdvanceStream`) and say, op
by op, what the output topic must get (`Out`, in order) and what state must be left.

Clocks. The task's stream time is the largest record timestamp so far (-1 before any), or more
when `AdvanceStream` moves it; the wall clock is the driver's, moved only by `AdvanceWall`.
After each op (a record once it is processed, or an advance) the task runs a stream pass, then
a wall pass: what is due on that clock at that moment acts. A stream timer set by a wall firing
at a time already reached therefore waits for the next op's stream pass.

Timers (`TimerModel`). A timer is identified by (key, name); setting one replaces the key's
timer of that name whatever its clock, cancelling removes it. In a pass on clock `c` at time
`now`: take the timers of `c` with `at <= now`; the group at the oldest such time fires in
order of (key bytes, name), each removed before its function runs and skipped if it was
cancelled or moved meanwhile; then look again (timers set while firing that are due fire in the
same pass, after the group). A firing forwards (key, {"fired": name, "at": at}) stamped `at`
(stream) or the wall clock (wall), without headers; then, for the first `fire_actions_limit`
firings of the run, applies the actions `on_fire[name]` to its key, with `ctx.timestamp` being
that stamp. A record forwards (key, {"rec": ts}) stamped ts (with its headers) after applying
its actions.

Expiry (`TtlModel`, `CountModel`). A key written at time w (the clock's time at the write:
the stream time, which counts the record being processed, or the wall clock) is expired once
`now >= w + ttl`: reads no longer see it. It is removed either by a pass (all expired keys in
order of (w + ttl, key bytes)), or, when it is written or deleted first, just before that
change; either way the expiry handler is called once for it, stamped `w + ttl` (stream) or the
wall clock (wall). A count with a TTL forwards (key, None) when its count expires and starts
the next one from scratch.

Ticks (`TickModel`). On the wall clock: first at start + every, then `every` after the wall
time of the last tick, at most one per pass. On stream time: the first pass with a stream time
only anchors the next tick at the next multiple of `every`; a pass at or past it ticks once and
anchors at the multiple after the stream time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STREAM = "stream"
WALL = "wall"

# --- operations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetTimer:
    """`ctx.set_timer(at, clock=clock, name=name)` with `at = max(0, base + delta)`; `base` is
    "ts" (`ctx.timestamp`), "wall" (`ctx.wall_clock_ms`) or "abs" (0)."""

    name: str
    clock: str
    base: str
    delta: int

    def at(self, timestamp: int, wall: int) -> int:
        base = {"ts": timestamp, "wall": wall, "abs": 0}[self.base]
        return max(0, base + self.delta)


@dataclass(frozen=True)
class Cancel:
    name: str


@dataclass(frozen=True)
class Put:
    key: str
    value: int


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class Get:
    key: str


@dataclass(frozen=True)
class Scan:
    """Forward every key the store shows, in key order."""


Action = SetTimer | Cancel | Put | Delete | Get | Scan


@dataclass(frozen=True)
class Pipe:
    key: str
    ts: int
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class AdvanceWall:
    ms: int


@dataclass(frozen=True)
class AdvanceStream:
    to_ms: int


Op = Pipe | AdvanceWall | AdvanceStream


@dataclass(frozen=True)
class Out:
    """A record on the output topic; `headers`: whether it carries the input's headers."""

    key: str | None
    value: Any
    timestamp: int
    headers: bool = False


def kb(key: str) -> bytes:
    """A key's bytes (the tests' keys are strings, serialized as UTF-8)."""
    return key.encode()


@dataclass
class _Clocks:
    stream_time: int = -1
    wall: int = 0

    def move(self, op: Op) -> None:
        if isinstance(op, Pipe):
            self.stream_time = max(self.stream_time, op.ts)
        elif isinstance(op, AdvanceWall):
            self.wall += op.ms
        else:
            self.stream_time = max(self.stream_time, op.to_ms)

    def now(self, clock: str) -> int:
        return self.stream_time if clock == STREAM else self.wall


# --- timers -------------------------------------------------------------------------------------


@dataclass
class TimerModel:
    on_fire: Mapping[str, Sequence[Action]] = field(default_factory=dict)
    fire_actions_limit: int = 0
    start_wall: int = 0
    timers: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    fired: int = 0

    def __post_init__(self) -> None:
        self.clocks = _Clocks(wall=self.start_wall)

    def step(self, op: Op) -> list[Out]:
        out: list[Out] = []
        self.clocks.move(op)
        if isinstance(op, Pipe):
            self._apply(op.key, op.actions, op.ts)
            out.append(Out(op.key, {"rec": op.ts}, op.ts, headers=True))
        for clock in (STREAM, WALL):
            self._pass(clock, out)
        return out

    def pending(self) -> list[tuple[str, str, str, int]]:
        """The timers set, as the driver lists them: by key bytes, then name."""
        items = [(key, name, clock, at) for (key, name), (clock, at) in self.timers.items()]
        return sorted(items, key=lambda t: (kb(t[0]), t[1]))

    def due_order(self, clock: str) -> list[tuple[str, str, int]]:
        """The pending timers of `clock` in the order they would fire, as (key, name, at)."""
        items = [(at, kb(k), n, k) for (k, n), (c, at) in self.timers.items() if c == clock]
        return [(k, n, at) for at, _, n, k in sorted(items)]

    def _apply(self, key: str, actions: Sequence[Action], timestamp: int) -> None:
        for action in actions:
            if isinstance(action, SetTimer):
                at = action.at(timestamp, self.clocks.wall)
                self.timers[(key, action.name)] = (action.clock, at)
            elif isinstance(action, Cancel):
                self.timers.pop((key, action.name), None)

    def _pass(self, clock: str, out: list[Out]) -> None:
        now = self.clocks.now(clock)
        while True:
            due = [at for (c, at) in self.timers.values() if c == clock and at <= now]
            if not due:
                return
            first = min(due)
            group = sorted(
                (kb(k), n, k)
                for (k, n), (c, at) in self.timers.items()
                if (c, at) == (clock, first)
            )
            for _, name, key in group:
                if self.timers.get((key, name)) != (clock, first):
                    continue  # cancelled or moved by an earlier firing of the group
                del self.timers[(key, name)]
                stamp = first if clock == STREAM else now
                out.append(Out(key, {"fired": name, "at": first}, stamp))
                if self.fired < self.fire_actions_limit:
                    self._apply(key, self.on_fire.get(name, ()), stamp)
                self.fired += 1


# --- expiry -------------------------------------------------------------------------------------


@dataclass
class TtlModel:
    """A key-value store `store` with `ttl_ms` on `clock`; with `on_expire`, each expiry is
    forwarded as (key, {"expired": store, "last": value, "ctx_key": key})."""

    ttl_ms: int
    clock: str = STREAM
    on_expire: bool = True
    store: str = "s"
    start_wall: int = 0
    entries: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (value, w)
    expired: list[tuple[str, int]] = field(default_factory=list)  # every expiry: (key, last)

    def __post_init__(self) -> None:
        self.clocks = _Clocks(wall=self.start_wall)

    @property
    def now(self) -> int:
        return self.clocks.now(self.clock)

    def visible(self) -> dict[str, int]:
        return {k: v for k, (v, w) in self.entries.items() if w + self.ttl_ms > self.now}

    def step(self, op: Op) -> list[Out]:
        out: list[Out] = []
        self.clocks.move(op)
        if isinstance(op, Pipe):
            for action in op.actions:
                self._act(op.key, op.ts, action, out)
        due = sorted(
            (w + self.ttl_ms, kb(k), k)
            for k, (_, w) in self.entries.items()
            if w + self.ttl_ms <= self.now
        )
        for _, _, key in due:
            self._expire(key, out)
        return out

    def _act(self, rec_key: str, ts: int, action: Action, out: list[Out]) -> None:
        if isinstance(action, Put | Delete):
            if action.key in self.entries and action.key not in self.visible():
                self._expire(action.key, out)
            self.entries.pop(action.key, None)
            if isinstance(action, Put):
                self.entries[action.key] = (action.value, max(0, self.now))
        elif isinstance(action, Get):
            value = self.visible().get(action.key)
            out.append(Out(rec_key, {"get": action.key, "value": value}, ts, headers=True))
        elif isinstance(action, Scan):
            shown = sorted(self.visible().items(), key=lambda item: kb(item[0]))
            out.append(Out(rec_key, {"all": [[k, v] for k, v in shown]}, ts, headers=True))

    def _expire(self, key: str, out: list[Out]) -> None:
        value, written = self.entries.pop(key)
        self.expired.append((key, value))
        if self.on_expire:
            stamp = written + self.ttl_ms if self.clock == STREAM else self.clocks.wall
            body = {"expired": self.store, "last": value, "ctx_key": key}
            out.append(Out(key, body, stamp))


@dataclass
class CountModel:
    """`groupBy key .count(ttl_ms=...)` on stream time, as its table's stream of changes."""

    ttl_ms: int
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (count, w)

    def __post_init__(self) -> None:
        self.clocks = _Clocks()

    def step(self, op: Op) -> list[Out]:
        out: list[Out] = []
        self.clocks.move(op)
        now = self.clocks.stream_time
        if isinstance(op, Pipe):
            count, written = self.counts.pop(op.key, (0, 0))
            if count and written + self.ttl_ms <= now:
                out.append(Out(op.key, None, written + self.ttl_ms))
                count = 0
            self.counts[op.key] = (count + 1, now)
            out.append(Out(op.key, count + 1, op.ts, headers=True))
        due = sorted((w + self.ttl_ms, kb(k), k) for k, (_, w) in self.counts.items())
        for at, _, key in due:
            if at <= now:
                del self.counts[key]
                out.append(Out(key, None, at))
        return out


# --- ticks --------------------------------------------------------------------------------------


@dataclass
class TickModel:
    """`on_tick` every `every_ms` on `clock`, forwarding (None, {"tick": stamp}); records
    forward their marker as in `TimerModel`."""

    every_ms: int
    clock: str = WALL
    start_wall: int = 0
    ticks: int = 0

    def __post_init__(self) -> None:
        self.clocks = _Clocks(wall=self.start_wall)
        self.next_tick: int | None = self.start_wall + self.every_ms if self.clock == WALL else None

    def step(self, op: Op) -> list[Out]:
        out: list[Out] = []
        self.clocks.move(op)
        if isinstance(op, Pipe):
            out.append(Out(op.key, {"rec": op.ts}, op.ts, headers=True))
        now = self.clocks.now(self.clock)
        if self.clock == WALL:
            assert self.next_tick is not None
            if now >= self.next_tick:
                self._tick(now, out)
                self.next_tick = now + self.every_ms
        elif now >= 0:
            if self.next_tick is not None and now >= self.next_tick:
                self._tick(now, out)
            if self.next_tick is None or now >= self.next_tick:
                self.next_tick = (now // self.every_ms + 1) * self.every_ms
        return out

    def _tick(self, stamp: int, out: list[Out]) -> None:
        self.ticks += 1
        out.append(Out(None, {"tick": stamp}, stamp))
