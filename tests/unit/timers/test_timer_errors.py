"""What goes wrong with timers, ticks and expiry: a function that raises goes to the processing
error handler (fail stops with a `RecordError` naming the operator and the timer; skip and
dead_letter consume the firing and count it apart from input records), and topologies or calls
that cannot work are refused with a message that says what to do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from processor import Topology
from processor.errors import RecordError, TopologyError
from processor.testing import TopologyTestDriver
from processor.topology.context import ProcessorContext
from processor.topology.handling import ErrorHandler, Outcome
from tests.unit.timers.harness import IN, JSON, OUT, STR

DEAD = "app-dead-letters"


def topology(
    on_record: Callable[..., Any], *, stores: tuple[str, ...] = (), ttl_ms: int = 0, **timing: Any
) -> Topology:
    t = Topology("app")
    if ttl_ms:
        t.add_store("s", key_serde=STR, value_serde=JSON, ttl_ms=ttl_ms)
    stream = t.stream(IN, key_serde=STR, value_serde=JSON)
    stream.process(on_record, name="op", stores=stores, **timing).to(
        OUT, key_serde=STR, value_serde=JSON
    )
    return t


def set_at(ctx: ProcessorContext, key: str, value: Any) -> None:
    """Sets the key's timer `value[0]` at `value[1]` (stream clock)."""
    ctx.set_timer(value[1], name=value[0])


def failing_timer(ctx: ProcessorContext, key: str, at: int, name: str) -> None:
    if name == "bad":
        raise RuntimeError(f"no {key}")
    ctx.forward(key, {"fired": name})


def test_a_failing_timer_under_fail_stops_naming_the_operator_and_the_timer() -> None:
    driver = TopologyTestDriver(topology(set_at, on_timer=failing_timer))
    driver.pipe(IN, "k", ["bad", 5], timestamp=1)
    with pytest.raises(RecordError) as raised:
        driver.pipe(IN, "j", ["ok", 0], timestamp=6)
    message = str(raised.value)
    assert "operator 'op'" in message and "timer 'bad' at 5" in message
    assert "RuntimeError: no k" in message
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_a_failing_timer_under_skip_is_consumed_and_the_others_fire() -> None:
    driver = TopologyTestDriver(
        topology(set_at, on_timer=failing_timer), processing_error_handler=ErrorHandler.SKIP
    )
    driver.pipe(IN, "a", ["bad", 5], timestamp=1)
    driver.pipe(IN, "b", ["ok", 5], timestamp=1)
    driver.read(OUT)
    driver.advance_stream_time(IN, 5)
    assert driver.read(OUT) == [("b", {"fired": "ok"})]
    assert driver.timers("op") == []
    driver.advance_stream_time(IN, 50)  # not retried
    assert driver.read(OUT) == []
    assert driver.accounting.timers == {"skipped": 1, "fired": 1}
    assert driver.accounting.totals()[Outcome.SKIPPED] == 0  # input records only


def test_a_failing_timer_under_dead_letter_sends_the_timer_key_with_its_name_and_time() -> None:
    driver = TopologyTestDriver(
        topology(set_at, on_timer=failing_timer), processing_error_handler=ErrorHandler.DEAD_LETTER
    )
    driver.pipe(IN, "k", ["bad", 7], timestamp=1)
    driver.advance_stream_time(IN, 9)
    [dead] = driver.read_records(DEAD)
    assert (dead.key, dead.value, dead.timestamp) == (b"k", None, 7)
    headers = dict(dead.headers or [])
    assert headers["processor.error.operator"] == b"op"
    assert headers["processor.error.timer"] == b"timer 'bad'"
    assert headers["processor.error.timer.time"] == b"7"
    assert headers["processor.error.type"] == b"RuntimeError"
    assert driver.accounting.timers == {"dead_lettered": 1}
    assert driver.timers("op") == []


def test_failing_ticks_and_expiries_are_dead_lettered_as_such() -> None:
    def on_record(ctx: ProcessorContext, key: str, value: Any) -> None:
        ctx.store("s").put(key, value)

    def fail(ctx: ProcessorContext, *args: Any) -> None:
        raise ValueError("nope")

    t = topology(on_record, stores=("s",), ttl_ms=10, on_expire=fail, on_tick=fail, every_ms=100)
    driver = TopologyTestDriver(t, processing_error_handler=ErrorHandler.DEAD_LETTER)
    driver.pipe(IN, "k", 1, timestamp=3)
    driver.advance_stream_time(IN, 13)
    [expiry] = driver.read_records(DEAD)
    assert (expiry.key, expiry.value, expiry.timestamp) == (b"k", None, 13)
    headers = dict(expiry.headers or [])
    assert headers["processor.error.timer"] == b"expiry of 's'"
    assert headers["processor.error.timer.time"] == b"13"
    assert driver.store("s").get("k") is None
    driver.advance_wall_clock(100)
    [tick] = driver.read_records(DEAD)
    assert (tick.key, tick.value, tick.timestamp) == (None, None, 100)
    assert dict(tick.headers or [])["processor.error.timer"] == b"tick"
    driver.advance_wall_clock(100)  # ticks go on
    assert len(driver.read_records(DEAD)) == 1
    assert driver.accounting.timers == {"dead_lettered": 3}


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda ctx: ctx.set_timer(-1), ValueError, "int of milliseconds >= 0"),
        (lambda ctx: ctx.set_timer(1.5), ValueError, "int of milliseconds >= 0"),
        (lambda ctx: ctx.set_timer(True), ValueError, "int of milliseconds >= 0"),
        (lambda ctx: ctx.set_timer(1, clock="cpu"), ValueError, '"stream" or "wall"'),
    ],
)
def test_a_bad_timer_is_the_functions_error(
    call: Callable[[ProcessorContext], None], error: type[Exception], words: str
) -> None:
    def on_timer(ctx: ProcessorContext, key: str, at: int, name: str) -> None:
        pass

    driver = TopologyTestDriver(topology(lambda ctx, k, v: call(ctx), on_timer=on_timer))
    with pytest.raises(RecordError) as raised:
        driver.pipe(IN, "k", 1, timestamp=0)
    assert isinstance(raised.value.__cause__, error)
    assert words in str(raised.value.__cause__)
    assert driver.timers("op") == []


@pytest.mark.parametrize("method", ["set_timer", "cancel_timer"])
def test_timers_without_on_timer_are_refused_saying_what_to_add(method: str) -> None:
    def on_record(ctx: ProcessorContext, key: str, value: Any) -> None:
        ctx.set_timer(5) if method == "set_timer" else ctx.cancel_timer()

    driver = TopologyTestDriver(topology(on_record))
    with pytest.raises(RecordError) as raised:
        driver.pipe(IN, "k", 1, timestamp=0)
    cause = raised.value.__cause__
    assert isinstance(cause, TopologyError)
    assert f"{method}() needs a timer function" in str(cause) and "on_timer=" in str(cause)
    with pytest.raises(TopologyError, match="no process\\(\\) operator 'op' with on_timer"):
        driver.timers("op")


def test_a_tick_has_no_key_to_set_a_timer_for() -> None:
    def on_tick(ctx: ProcessorContext) -> None:
        ctx.set_timer(5)

    t = topology(set_at, on_timer=failing_timer, on_tick=on_tick, every_ms=10, clock="stream")
    driver = TopologyTestDriver(t)
    driver.pipe(IN, "k", ["ok", 100], timestamp=0)
    with pytest.raises(RecordError) as raised:
        driver.advance_stream_time(IN, 10)
    assert isinstance(raised.value.__cause__, TopologyError)
    assert "needs a current key; on_tick has none" in str(raised.value.__cause__)


def noop(ctx: ProcessorContext, *args: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("timing", "words"),
    [
        ({"on_tick": noop}, "on_tick= and every_ms= go together"),
        ({"every_ms": 100}, "on_tick= and every_ms= go together"),
        ({"on_tick": noop, "every_ms": 0}, "every_ms must be an int > 0"),
        ({"on_tick": noop, "every_ms": True}, "every_ms must be an int > 0"),
        ({"on_tick": noop, "every_ms": 10, "clock": "cpu"}, 'clock is "stream" or "wall"'),
        ({"on_timer": "fire"}, "on_timer= must be a function"),
        ({"on_expire": noop}, "on_expire= needs a store with a TTL"),
    ],
)
def test_process_refuses_timing_that_cannot_work(timing: dict[str, Any], words: str) -> None:
    t = Topology("app")
    t.add_store("plain", key_serde=STR, value_serde=JSON)
    stream = t.stream(IN, key_serde=STR, value_serde=JSON)
    with pytest.raises(TopologyError, match="process 'op'") as raised:
        stream.process(noop, name="op", stores=["plain"], **timing)
    assert words in str(raised.value)


def test_at_most_one_process_declares_on_expire_for_a_store() -> None:
    t = Topology("app")
    t.add_store("s", key_serde=STR, value_serde=JSON, ttl_ms=10)
    stream = t.stream(IN, key_serde=STR, value_serde=JSON)
    stream.process(noop, name="first", stores=["s"], on_expire=noop)
    stream.process(noop, name="reader", stores=["s"])  # without on_expire: fine
    with pytest.raises(TopologyError) as raised:
        stream.process(noop, name="second", stores=["s"], on_expire=noop)
    message = str(raised.value)
    assert "store 's' already has an expiry handler, in 'first'" in message
    assert "at most one operator may act on a store's expired keys" in message


@pytest.mark.parametrize(
    ("ttl", "words"),
    [
        ({"ttl_ms": -1}, "ttl_ms must be an int >= 0"),
        ({"ttl_ms": True}, "ttl_ms must be an int >= 0"),
        ({"ttl_ms": 10, "ttl_clock": "cpu"}, 'ttl_clock is "stream" or "wall"'),
    ],
)
def test_a_store_refuses_a_ttl_that_cannot_work(ttl: dict[str, Any], words: str) -> None:
    with pytest.raises(TopologyError, match="store 's'") as raised:
        Topology("app").add_store("s", key_serde=STR, value_serde=JSON, **ttl)
    assert words in str(raised.value)
    grouped = Topology("app").stream(IN, key_serde=STR, value_serde=JSON).group_by_key()
    if "ttl_clock" not in ttl:
        with pytest.raises(TopologyError, match="ttl_ms must be an int >= 0"):
            grouped.count(name="counts", ttl_ms=ttl["ttl_ms"])
