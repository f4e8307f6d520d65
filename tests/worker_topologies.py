"""Topologies the integration tests run in worker processes. Topic names come from the
environment, so each test uses its own topics."""

import logging
import os
import time
from collections import Counter
from typing import Any

from processor import ProcessorContext, Retry, Topology, TransientError, serdes
from processor.windows import JoinWindows, SessionWindows, TumblingWindows

SOURCE = os.environ.get("TEST_SOURCE_TOPIC", "test-source")
SECOND_SOURCE = os.environ.get("TEST_SECOND_SOURCE_TOPIC", "test-source-2")
SINK = os.environ.get("TEST_SINK_TOPIC", "test-sink")
INSTANCE = os.environ.get("PROCESSOR_INSTANCE_ID", "unnamed").encode()

# Tags every value with the instance that processed it: b"<instance>|<value>".
tagging = Topology("tagging")
tagging.stream(SOURCE).map_values(lambda value: INSTANCE + b"|" + value).to(SINK)

# Routes each value b"<kind>:<n>" to the topic "<sink>-<kind>" (to() with a function).
routing = Topology("routing")
routing.stream(SOURCE).to(lambda _key, value: f"{SINK}-{value.split(b':')[0].decode()}")

# Two co-partitioned sources merged into one sub-topology.
copartitioned = Topology("copartitioned")
copartitioned.stream(SOURCE).merge(copartitioned.stream(SECOND_SOURCE)).to(SINK)

# Counts records per value: re-keyed through a repartition topic, counted in store "counts",
# every update written to the sink as (value, count).
counting = Topology("counting")
(
    counting.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .group_by(lambda _key, value: value, name="by-value")
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)

# Collects, per key, the ids of the records seen: values are "<key>:<id>"; the aggregate is the
# sorted list of ids, so a lost record shows as a missing id even where another was duplicated.
collecting = Topology("collecting")
(
    collecting.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .group_by(lambda _key, value: value.split(":")[0], name="by-key")
    .aggregate(
        list,
        lambda _key, value, seen: sorted({*seen, int(value.split(":")[1])}),
        value_serde=serdes.JsonSerde(),
        name="seen",
    )
    .to_stream()
    .to(SINK, value_serde=serdes.JsonSerde())
)


# Microseconds the restorer waits per record it applied: a restore of a few thousand records
# then lasts long enough for a test to watch it move (the status page's browser test).
RESTORE_PAUSE_US = int(os.environ.get("TEST_RESTORE_PAUSE_US", "0"))


class LoggingRestoreListener:
    """Logs every restore call, for tests to read in the worker's log (and waits
    `RESTORE_PAUSE_US` per record applied, when set)."""

    def on_restore_start(self, task_id: object, topic: str, start: int, end: int) -> None:
        logging.getLogger("test.listener").info(
            "restore start %s %s %d %d", task_id, topic, start, end
        )

    def on_batch_restored(self, task_id: object, topic: str, last_offset: int, count: int) -> None:
        logging.getLogger("test.listener").info("restore batch %s %d", task_id, count)
        if RESTORE_PAUSE_US:
            time.sleep(count * RESTORE_PAUSE_US / 1e6)

    def on_restore_end(self, task_id: object, topic: str, total: int) -> None:
        logging.getLogger("test.listener").info("restore end %s %s %d", task_id, topic, total)


# Counts records per key, without re-keying (one sub-topology, the store "counts" in each task);
# every update written to the sink as (key, count). Restores are logged by a listener.
keyed_counting = Topology("keyed_counting")
(
    keyed_counting.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .group_by_key()
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)
keyed_counting.on_restore(LoggingRestoreListener())


# Keeps records whose JSON value is an object with an integer "n" not divisible by 3, and counts
# them per key. A value that is not JSON fails to deserialize; JSON that is not such an object
# makes the filter raise; a record without a key reaches the count without the key it needs.
validating = Topology("validating")
(
    validating.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
    .filter(lambda _key, value: value["n"] % 3 != 0, name="n-not-divisible-by-3")
    .group_by_key()
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)

# A user function that fails: keys ending in "t" raise TransientError on the first two calls
# for a record (then succeed), keys ending in "x" always raise ValueError.
_calls: Counter[tuple[str, str]] = Counter()


def _flaky(key: str, value: str) -> tuple[str, str]:
    if key.endswith("x"):
        raise ValueError(f"cannot handle key {key!r}")
    if key.endswith("t"):
        _calls[(key, value)] += 1
        if _calls[(key, value)] <= 2:
            raise TransientError(f"lookup for {key!r} timed out")
    return key, value.upper()


flaky = Topology("flaky")
(
    flaky.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .map(_flaky, name="lookup")
    .to(SINK)
)

# `counting`, except that instance z0 stands still for TEST_STALL_S seconds in its user function
# when it sees the value "stall" (a slow call, a long GC pause): long enough to be replaced.
STALL_S = float(os.environ.get("TEST_STALL_S", "0"))


def _value_or_stall(_key: str, value: str) -> str:
    if value == "stall" and INSTANCE == b"z0":
        time.sleep(STALL_S)
    return value


stalling_counting = Topology("stalling-counting")
(
    stalling_counting.stream(
        SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
    )
    .group_by(_value_or_stall, name="by-value")
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)

# The latest value per key (table "latest", over the source), and how many values each key has
# had (store "counts"), every count written to the sink as (key, count).
latest = Topology("latest")
(
    latest.table(
        SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde(), name="latest"
    )
    .to_stream()
    .group_by_key()
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)


# Counts records per key in 1-second tumbling windows of event time (the JSON value's "ts",
# grace 500 ms), each window written once when it closes, as ("<key>@<start>", count).
windowed_counting = Topology("windowed-counting")
(
    windowed_counting.stream(
        SOURCE,
        key_serde=serdes.StringSerde(),
        value_serde=serdes.JsonSerde(),
        timestamp=lambda _key, value, _record_ts: value["ts"],
    )
    .group_by_key()
    .windowed_by(TumblingWindows(size_ms=1_000, grace_ms=500), emit="final")
    .count(name="per-second")
    .to_stream()
    .map(lambda window, count: (f"{window.key}@{window.start_ms}", count))
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
)

# Counts records per key in sessions of event time (gap 1 s, grace 500 ms), each session written
# once when it closes, as ("<key>@<start>-<end>", count).
session_counting = Topology("session-counting")
(
    session_counting.stream(
        SOURCE,
        key_serde=serdes.StringSerde(),
        value_serde=serdes.JsonSerde(),
        timestamp=lambda _key, value, _record_ts: value["ts"],
    )
    .group_by_key()
    .windowed_by(SessionWindows(inactivity_gap_ms=1_000, grace_ms=500), emit="final")
    .count(name="sessions")
    .to_stream()
    .map(lambda window, count: (f"{window.key}@{window.start_ms}-{window.end_ms}", count))
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
)


# Counts records per key and event-time minute (each value is its event time in ms) in window
# store "per-minute", every update written to the sink as ("<key>@<start>", count), and per key
# and session (30 s of inactivity) in session store "sessions". The grace of an hour keeps every
# window of a test open, so none of its records is late.
windowed_querying = Topology("windowed_querying")
_timed = windowed_querying.stream(
    SOURCE,
    key_serde=serdes.StringSerde(),
    value_serde=serdes.StringSerde(),
    timestamp=lambda _key, value, _record_ts: int(value),
).group_by_key()
(
    _timed.windowed_by(TumblingWindows(size_ms=60_000, grace_ms=3_600_000))
    .count(name="per-minute")
    .to_stream()
    .map(lambda window, n: (f"{window.key}@{window.start_ms}", n))
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
)
_timed.windowed_by(SessionWindows(inactivity_gap_ms=30_000, grace_ms=3_600_000)).count(
    name="sessions"
)

# Counts records per key in 1-second tumbling windows of their record timestamps and writes
# every update with its windowed key as is (WindowedSerde: key bytes, start, end).
windowed_keys = Topology("windowed_keys")
(
    windowed_keys.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .group_by_key()
    .windowed_by(TumblingWindows(size_ms=1_000, grace_ms=60_000))
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)


def _with_id(_key: str, value: dict[str, int], ids: list[int]) -> list[int]:
    return sorted({*ids, value["id"]})


# The windows of `windowed_counting` and of `session_counting` over one stream, collecting the
# ids (the JSON value's "id") of the records of each window instead of counting them, each window
# written once when it closes, as ("tumbling:<key>@<start>", ids) and
# ("session:<key>@<start>-<end>", ids). Ids are a sorted set: a record processed twice leaves
# them unchanged (at-least-once), a lost record or one counted into the wrong window shows.
windowed_collecting = Topology("windowed-collecting")
_events = windowed_collecting.stream(
    SOURCE,
    key_serde=serdes.StringSerde(),
    value_serde=serdes.JsonSerde(),
    timestamp=lambda _key, value, _record_ts: value["ts"],
)
(
    _events.group_by_key()
    .windowed_by(TumblingWindows(size_ms=1_000, grace_ms=500), emit="final")
    .aggregate(list, _with_id, value_serde=serdes.JsonSerde(), name="ids-per-second")
    .to_stream()
    .map(lambda window, ids: (f"tumbling:{window.key}@{window.start_ms}", ids))
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
)
(
    _events.group_by_key()
    .windowed_by(SessionWindows(inactivity_gap_ms=1_000, grace_ms=500), emit="final")
    .aggregate(
        list,
        _with_id,
        merger=lambda _key, ids, more: sorted({*ids, *more}),
        value_serde=serdes.JsonSerde(),
        name="ids-per-session",
    )
    .to_stream()
    .map(lambda window, ids: (f"session:{window.key}@{window.start_ms}-{window.end_ms}", ids))
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
)


# The windows of `windowed_counting` and of `session_counting` over one stream, counted, each
# window written once when it closes, as ("tumbling:<key>@<start>", count) and
# ("session:<key>@<start>-<end>", count): one cluster shows both kinds exactly once under faults.
windowed_and_session_counting = Topology("windowed-and-session-counting")
_counted = windowed_and_session_counting.stream(
    SOURCE,
    key_serde=serdes.StringSerde(),
    value_serde=serdes.JsonSerde(),
    timestamp=lambda _key, value, _record_ts: value["ts"],
)
(
    _counted.group_by_key()
    .windowed_by(TumblingWindows(size_ms=1_000, grace_ms=500), emit="final")
    .count(name="per-second")
    .to_stream()
    .map(lambda window, count: (f"tumbling:{window.key}@{window.start_ms}", count))
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
)
(
    _counted.group_by_key()
    .windowed_by(SessionWindows(inactivity_gap_ms=1_000, grace_ms=500), emit="final")
    .count(name="sessions")
    .to_stream()
    .map(lambda window, count: (f"session:{window.key}@{window.start_ms}-{window.end_ms}", count))
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
)


# Timers and a store with a TTL in one process() operator (`tests/integration/timer_scenario.py`
# computes what it must emit). Each record's JSON value carries its event time "ts" and a command
# "op": "set:<name>:<at_ms>" sets (or replaces) the key's stream-clock timer <name>,
# "cancel:<name>" cancels it, "read:<value>" writes <value> into the store "last-seen", whose keys
# expire TIMING_TTL_MS of stream time after their last write. A firing writes
# "<key>|<name>|<at_ms>" to the sink; the timer "echo", as it fires, also sets the key's timer
# "echo-2" TIMING_ECHO_MS later. An expiry writes "expired|<key>|<last value>".
TIMING_TTL_MS = 2_000
TIMING_ECHO_MS = 300


def _timing_command(ctx: ProcessorContext, key: str, value: dict[str, Any]) -> None:
    kind, _, rest = value["op"].partition(":")
    if kind == "set":
        name, at = rest.split(":")
        ctx.set_timer(int(at), name=name)
    elif kind == "cancel":
        ctx.cancel_timer(rest)
    else:
        ctx.store("last-seen").put(key, rest)


def _timing_fired(ctx: ProcessorContext, key: str, at_ms: int, name: str) -> None:
    ctx.forward(key, f"{key}|{name}|{at_ms}")
    if name == "echo":
        ctx.set_timer(at_ms + TIMING_ECHO_MS, name="echo-2")


def _timing_expired(ctx: ProcessorContext, _store: str, key: str, last: str) -> None:
    ctx.forward(key, f"expired|{key}|{last}")


timing = Topology("timing")
timing.add_store(
    "last-seen",
    key_serde=serdes.StringSerde(),
    value_serde=serdes.StringSerde(),
    ttl_ms=TIMING_TTL_MS,
)
(
    timing.stream(
        SOURCE,
        key_serde=serdes.StringSerde(),
        value_serde=serdes.JsonSerde(),
        timestamp=lambda _key, value, _record_ts: value["ts"],
    )
    .process(
        _timing_command,
        stores=["last-seen"],
        on_timer=_timing_fired,
        on_expire=_timing_expired,
        name="timing",
    )
    .to(SINK, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
)


# Impressions (`TEST_SOURCE_TOPIC`) joined with the clicks (`TEST_SECOND_SOURCE_TOPIC`) of the same
# key, string keys and values: a click matches an impression when `impression.ts - 100 <= click.ts
# <= impression.ts + 300` (grace 1 s), twice over, each to the sink: an inner join,
# "inner:<impression>+<click>", and a left join, "left:<impression>+<click or None>"
# (`tests/integration/join_scenario.py` computes what they must emit).
CLICK_WINDOW = JoinWindows(before_ms=100, after_ms=300, grace_ms=1_000)
click_through = Topology("click-through")
_impressions = click_through.stream(
    SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
)
_clicks = click_through.stream(
    SECOND_SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
)
(
    _impressions.join(
        _clicks,
        lambda impression, click: f"inner:{impression}+{click}",
        window=CLICK_WINDOW,
        how="inner",
        name="clicked",
    ).to(SINK)
)
(
    _impressions.join(
        _clicks,
        lambda impression, click: f"left:{impression}+{click}",
        window=CLICK_WINDOW,
        how="left",
        name="click-through",
    ).to(SINK)
)


# Counts records per value after an async call to a local HTTP service (`TEST_SERVICE_URL`,
# started by the test: /echo answers the value, slowly, sometimes with a 503): the call's
# result is grouped and counted, so a lost or repeated call shows in the counts.
SERVICE_URL = os.environ.get("TEST_SERVICE_URL", "http://127.0.0.1:9")
async_counting = Topology("async-counting")
_http: dict[str, Any] = {}


@async_counting.on_start
async def _open_http() -> None:
    import aiohttp

    _http["session"] = aiohttp.ClientSession(
        base_url=SERVICE_URL, timeout=aiohttp.ClientTimeout(total=10)
    )


@async_counting.on_stop
async def _close_http() -> None:
    await _http["session"].close()


async def _echo(value: str) -> str:
    async with _http["session"].get("/echo", params={"v": value}) as response:
        response.raise_for_status()
        return str(await response.text())


def _service_errors() -> tuple[type[BaseException], ...]:
    import aiohttp

    return (aiohttp.ClientError, TimeoutError)


(
    async_counting.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .map_values_async(
        _echo,
        concurrency=16,
        timeout_ms=3_000,
        retry=Retry(attempts=1_000, backoff_ms=20, max_backoff_ms=200, on=_service_errors()),
        name="echo",
    )
    .group_by(lambda _key, value: value, name="by-value")
    .count(name="counts")
    .to_stream()
    .to(SINK, value_serde=serdes.IntSerde())
)

# Each value replaced by the service's answer (the same value, after a delay that varies from
# call to call), in input order per partition: `ordered=True` must undo the calls' reordering.
async_echo = Topology("async-echo")
async_echo.on_start(_open_http)
async_echo.on_stop(_close_http)
(
    async_echo.stream(SOURCE, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
    .map_values_async(_echo, concurrency=32, timeout_ms=3_000, name="echo")
    .to(SINK)
)
