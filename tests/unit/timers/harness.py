"""Test topologies that do what the reference's operations say (tests/unit/timers/reference.py),
and a runner that replays operations on a `TopologyTestDriver` and reads what came out as the
reference's `Out` records.

Record values are JSON lists of actions (`encode`); `on_timer` applies the actions of the table
`on_fire` for the first `fire_actions_limit` firings, as `TimerModel` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from processor import Topology, serdes
from processor.testing import TopologyTestDriver
from processor.topology.context import ProcessorContext
from processor.topology.handling import Outcome
from tests.unit.timers.reference import (
    Action,
    AdvanceStream,
    AdvanceWall,
    Cancel,
    Delete,
    Get,
    Op,
    Out,
    Pipe,
    Put,
    Scan,
    SetTimer,
    TimerModel,
    TtlModel,
)
from tests.unit.timers.strategies import KEYS, TimerCase, TtlCase

STR = serdes.StringSerde()
JSON = serdes.JsonSerde()
INT = serdes.IntSerde()
IN, OUT = "in", "out"
HEADERS = [("h", b"1")]


def encode(action: Action) -> list[Any]:
    if isinstance(action, SetTimer):
        return ["set", action.name, action.clock, action.base, action.delta]
    if isinstance(action, Cancel):
        return ["cancel", action.name]
    if isinstance(action, Put):
        return ["put", action.key, action.value]
    if isinstance(action, Delete | Get):
        return ["del" if isinstance(action, Delete) else "get", action.key]
    return ["all"]


def decode(data: list[Any]) -> Action:
    kind, *args = data
    classes: dict[str, Any] = {
        "set": SetTimer,
        "cancel": Cancel,
        "put": Put,
        "del": Delete,
        "get": Get,
        "all": Scan,
    }
    action: Action = classes[kind](*args)
    return action


def apply(ctx: ProcessorContext, action: Action, store: str = "s") -> None:
    """Do `action` in a process() function (or on_timer) for the context's key."""
    if isinstance(action, SetTimer):
        at = action.at(ctx.timestamp, ctx.wall_clock_ms)
        ctx.set_timer(at, clock=action.clock, name=action.name)
    elif isinstance(action, Cancel):
        ctx.cancel_timer(action.name)
    elif isinstance(action, Put):
        ctx.store(store).put(action.key, action.value)
    elif isinstance(action, Delete):
        ctx.store(store).delete(action.key)
    elif isinstance(action, Get):
        ctx.forward(ctx.key, {"get": action.key, "value": ctx.store(store).get(action.key)})
    else:
        ctx.forward(ctx.key, {"all": [[k, v] for k, v in ctx.store(store).all()]})


def run_actions(ctx: ProcessorContext, key: Any, value: list[list[Any]]) -> None:
    for action in value:
        apply(ctx, decode(action))


def _to_out(topology: Topology, source: Any) -> None:
    source.to(OUT, key_serde=STR, value_serde=JSON)


def timer_topology(on_fire: Mapping[str, Sequence[Action]], fire_actions_limit: int) -> Topology:
    """process "op": records apply their actions, then forward {"rec": ts}; each firing
    forwards {"fired": name, "at": at}, then applies `on_fire[name]` (the first
    `fire_actions_limit` firings)."""
    fired = [0]

    def on_record(ctx: ProcessorContext, key: str, value: list[list[Any]]) -> None:
        run_actions(ctx, key, value)
        ctx.forward(key, {"rec": ctx.timestamp})

    def on_timer(ctx: ProcessorContext, key: str, at: int, name: str) -> None:
        assert ctx.key == key
        ctx.forward(key, {"fired": name, "at": at})
        if fired[0] < fire_actions_limit:
            for action in on_fire.get(name, ()):
                apply(ctx, action)
        fired[0] += 1

    topology = Topology("tmr")
    stream = topology.stream(IN, key_serde=STR, value_serde=JSON)
    processed = stream.process(on_record, name="op", on_timer=on_timer, key_serde=STR)
    _to_out(topology, processed)
    return topology


def ttl_topology(ttl_ms: int, clock: str, *, on_expire: bool) -> Topology:
    """Store "s" (keys strings, values ints) with a TTL; process "op" applies the records'
    actions and, with `on_expire`, forwards {"expired": store, "last": value, "ctx_key": key}."""

    def expired(ctx: ProcessorContext, store: str, key: str, last: int) -> None:
        ctx.forward(key, {"expired": store, "last": last, "ctx_key": ctx.key})

    topology = Topology("ttl")
    topology.add_store("s", key_serde=STR, value_serde=INT, ttl_ms=ttl_ms, ttl_clock=clock)
    stream = topology.stream(IN, key_serde=STR, value_serde=JSON)
    processed = stream.process(
        run_actions, name="op", stores=["s"], on_expire=expired if on_expire else None
    )
    _to_out(topology, processed)
    return topology


def count_topology(ttl_ms: int) -> Topology:
    topology = Topology("cnt")
    grouped = topology.stream(IN, key_serde=STR, value_serde=JSON).group_by_key()
    counts = grouped.count(name="counts", ttl_ms=ttl_ms)
    counts.to_stream().to(OUT, key_serde=STR, value_serde=INT)
    return topology


def tick_topology(every_ms: int, clock: str) -> Topology:
    def on_record(ctx: ProcessorContext, key: str, value: Any) -> None:
        ctx.forward(key, {"rec": ctx.timestamp})

    def on_tick(ctx: ProcessorContext) -> None:
        assert ctx.key is None and ctx.headers is None
        ctx.forward(None, {"tick": ctx.timestamp})

    topology = Topology("tick")
    stream = topology.stream(IN, key_serde=STR, value_serde=JSON)
    processed = stream.process(
        on_record, name="op", on_tick=on_tick, every_ms=every_ms, clock=clock
    )
    _to_out(topology, processed)
    return topology


def do(driver: TopologyTestDriver, op: Op, value: Any = None) -> None:
    """Apply `op`; a `Pipe` sends its actions (or `value`, when given) with `HEADERS`."""
    if isinstance(op, Pipe):
        payload = [encode(a) for a in op.actions] if value is None else value
        driver.pipe(IN, op.key, payload, timestamp=op.ts, headers=HEADERS)
    elif isinstance(op, AdvanceWall):
        driver.advance_wall_clock(op.ms)
    else:
        assert isinstance(op, AdvanceStream)
        driver.advance_stream_time(IN, op.to_ms)


def outputs(driver: TopologyTestDriver, *, int_values: bool = False) -> list[Out]:
    """What the output topic got since the last call."""
    result = []
    for r in driver.read_records(OUT):
        key = None if r.key is None else r.key.decode()
        if r.value is None:
            value = None
        else:
            value = INT.deserialize(r.value) if int_values else json.loads(r.value)
        result.append(Out(key, value, r.timestamp, headers=r.headers == HEADERS))
    return result


def run_timers(case: TimerCase) -> tuple[TopologyTestDriver, TimerModel]:
    """Replay `case` on the driver and on the reference; after each op the outputs, the timers
    set and the firings counted must agree. Firings are not input records: every record is
    counted once, as an output."""
    driver = TopologyTestDriver(
        timer_topology(case.on_fire, case.fire_actions_limit), start_time_ms=case.start_wall
    )
    model = TimerModel(case.on_fire, case.fire_actions_limit, case.start_wall)
    for step, op in enumerate(case.ops):
        do(driver, op)
        assert outputs(driver) == model.step(op), f"op {step}: {op}"
        assert driver.timers("op") == model.pending(), f"timers after op {step}: {op}"
        assert driver.accounting.timers["fired"] == model.fired
    records = sum(isinstance(op, Pipe) for op in case.ops)
    assert driver.accounting.totals()[Outcome.OUTPUT] == records
    assert sum(driver.accounting.totals().values()) == records
    return driver, model


def check_store(driver: TopologyTestDriver, model: TtlModel) -> None:
    """The store shows the reference's unexpired keys, through `all`, `get` and `in`."""
    store = driver.store("s")
    visible = model.visible()
    assert dict(store.all()) == visible
    assert [k for k, _ in store.all()] == sorted(visible, key=str.encode)
    for key in KEYS:
        assert store.get(key) == visible.get(key)
        assert (key in store) == (key in visible)


def run_ttl(case: TtlCase) -> tuple[TopologyTestDriver, TtlModel]:
    """Replay `case` on the driver and on the reference; after each op the outputs (reads and
    expiries) and the store must agree."""
    topology = ttl_topology(case.ttl_ms, case.clock, on_expire=case.on_expire)
    driver = TopologyTestDriver(topology, start_time_ms=case.start_wall)
    model = TtlModel(case.ttl_ms, case.clock, case.on_expire, start_wall=case.start_wall)
    for step, op in enumerate(case.ops):
        do(driver, op)
        assert outputs(driver) == model.step(op), f"op {step}: {op}"
        check_store(driver, model)
    return driver, model
