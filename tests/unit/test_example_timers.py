"""The example topologies with timers and expiry (`topologies/device_alerts.py`,
`topologies/running_sum_timeout.py`), run through the in-memory driver: exact outputs, their
timestamps, the timers left and the stores."""

from __future__ import annotations

import json

import pytest

from processor.cli import main
from processor.testing import TopologyTestDriver
from topologies import device_alerts, running_sum_timeout

SILENCE = device_alerts.SILENCE_MS
HEARTBEAT = device_alerts.HEARTBEAT_MS
FORGET = device_alerts.FORGET_AFTER_MS
WALL_START = 1_700_000_000_000


def _alerts(driver: TopologyTestDriver) -> list[tuple[str, str, int, int]]:
    """(device, event, last_seen_ms, output timestamp) of each alert since the last read."""
    out = []
    for record in driver.read_records("device-alerts"):
        assert record.key is not None and record.value is not None
        event = json.loads(record.value)
        out.append((record.key.decode(), event["event"], event["last_seen_ms"], record.timestamp))
    return out


# --- device alerts --------------------------------------------------------------------------


def test_device_alerts_periods() -> None:
    assert (SILENCE, HEARTBEAT, FORGET) == (60_000, 300_000, 86_400_000)


def test_a_silent_device_raises_one_alert_with_its_last_reading() -> None:
    driver = TopologyTestDriver(device_alerts.topology, start_time_ms=WALL_START)
    driver.pipe("readings", "boiler", {"temp": 61.5}, timestamp=1_000)
    driver.pipe("readings", "fridge", {"temp": 4.0}, timestamp=2_000)
    driver.pipe("readings", "fridge", {"temp": 4.5}, timestamp=40_000)
    assert driver.read("device-alerts") == []
    driver.pipe("readings", "fridge", {"temp": 5.0}, timestamp=61_000)  # boiler: 60 s silent
    assert driver.read_records("device-alerts")[0].timestamp == 61_000  # the timer's time
    driver.pipe("readings", "fridge", {"temp": 5.5}, timestamp=150_000)  # fires once only
    assert driver.read("device-alerts") == []
    driver.pipe("readings", "boiler", {"temp": 60.0}, timestamp=200_000)  # fridge silent by now?
    assert driver.read("device-alerts") == []  # no: 150 s + 60 s is not reached
    driver.advance_stream_time("readings", 210_000)
    assert driver.read("device-alerts") == [
        ("fridge", {"event": "silent", "last_seen_ms": 150_000, "last": {"temp": 5.5}})
    ]
    assert driver.timers("watch") == [
        ("boiler", "heartbeat", "wall", WALL_START + HEARTBEAT),
        ("boiler", "silent", "stream", 260_000),
        ("fridge", "heartbeat", "wall", WALL_START + HEARTBEAT),
    ]


def test_each_reading_moves_the_alert_and_an_old_one_changes_nothing() -> None:
    driver = TopologyTestDriver(device_alerts.topology)
    driver.pipe("readings", "pump", {"rpm": 900}, timestamp=10_000)
    driver.pipe("readings", "pump", {"rpm": 950}, timestamp=50_000)
    driver.pipe("readings", "pump", {"rpm": 100}, timestamp=20_000)  # out of order: ignored
    assert driver.store("last-seen").get("pump") == {"at": 50_000, "reading": {"rpm": 950}}
    assert [t for t in driver.timers("watch") if t[1] == "silent"] == [
        ("pump", "silent", "stream", 110_000)
    ]
    driver.advance_stream_time("readings", 109_999)
    assert _alerts(driver) == []
    driver.advance_stream_time("readings", 110_000)  # stream time >= the timer's time
    assert _alerts(driver) == [("pump", "silent", 50_000, 110_000)]


def test_the_heartbeat_alert_follows_the_wall_clock_without_any_input() -> None:
    driver = TopologyTestDriver(device_alerts.topology, start_time_ms=WALL_START)
    driver.pipe("readings", "valve", {"open": True}, timestamp=5_000)
    driver.advance_wall_clock(HEARTBEAT - 1)
    driver.pipe("readings", "gauge", {"bar": 2.0}, timestamp=6_000)
    assert _alerts(driver) == []
    driver.advance_wall_clock(1)  # the valve's heartbeat is due; stream time has not moved
    assert _alerts(driver) == [("valve", "no-heartbeat", 5_000, WALL_START + HEARTBEAT)]
    driver.advance_wall_clock(HEARTBEAT)  # past the gauge's (at WALL_START + 2 * HEARTBEAT - 1)
    # A wall-clock timer's output carries the wall clock of its firing.
    assert _alerts(driver) == [("gauge", "no-heartbeat", 6_000, WALL_START + 2 * HEARTBEAT)]
    assert driver.stream_time("readings") == 6_000
    assert driver.timers("watch") == [
        ("gauge", "silent", "stream", 66_000),
        ("valve", "silent", "stream", 65_000),
    ]


def test_a_device_silent_for_long_is_forgotten_with_its_timers() -> None:
    driver = TopologyTestDriver(device_alerts.topology, start_time_ms=WALL_START)
    driver.pipe("readings", "lamp", {"lux": 300}, timestamp=0)
    driver.pipe("readings", "door", {"open": False}, timestamp=1_000)
    driver.advance_stream_time("readings", SILENCE + 1_000)
    assert _alerts(driver) == [
        ("lamp", "silent", 0, SILENCE),
        ("door", "silent", 1_000, SILENCE + 1_000),
    ]
    driver.advance_stream_time("readings", FORGET)  # the lamp's entry expires; heartbeats pend
    assert driver.read("device-alerts") == [
        ("lamp", {"event": "forgotten", "last_seen_ms": 0, "last": {"lux": 300}})
    ]
    assert list(driver.store("last-seen").all()) == [
        ("door", {"at": 1_000, "reading": {"open": False}})
    ]
    assert driver.timers("watch") == [("door", "heartbeat", "wall", WALL_START + HEARTBEAT)]
    driver.advance_stream_time("readings", FORGET + 1_000)
    assert _alerts(driver) == [("door", "forgotten", 1_000, FORGET + 1_000)]
    assert driver.timers("watch") == []
    driver.advance_wall_clock(HEARTBEAT)  # cancelled with the device: nothing fires
    assert _alerts(driver) == []


def test_the_last_seen_store_keeps_its_write_time_and_expires_with_a_tombstone() -> None:
    driver = TopologyTestDriver(device_alerts.topology)
    driver.pipe("readings", "fan", {"on": True}, timestamp=7_000)
    [write] = driver.read_records("device-alerts-last-seen-changelog")
    assert write.value == (7_000).to_bytes(8, "big") + b'{"at":7000,"reading":{"on":true}}'
    driver.advance_stream_time("readings", 7_000 + FORGET)
    assert [(r.key, r.value) for r in driver.read_records("device-alerts-last-seen-changelog")] == [
        (b"fan", None)
    ]


def test_a_jump_past_the_forget_period_only_forgets() -> None:
    """A timer that fires after its device expired finds no last reading: the device's only
    event is the forgotten one, which carries it."""
    driver = TopologyTestDriver(device_alerts.topology)
    driver.pipe("readings", "bell", {"rang": 1}, timestamp=0)
    driver.advance_stream_time("readings", FORGET)
    assert _alerts(driver) == [("bell", "forgotten", 0, FORGET)]
    assert driver.timers("watch") == []


def test_a_forgotten_device_that_reports_again_is_watched_afresh() -> None:
    driver = TopologyTestDriver(device_alerts.topology)
    driver.pipe("readings", "tap", {"flow": 1}, timestamp=0)
    driver.advance_stream_time("readings", FORGET)
    driver.read_records("device-alerts")
    driver.pipe("readings", "tap", {"flow": 2}, timestamp=FORGET + 5_000)
    assert driver.store("last-seen").get("tap") == {"at": FORGET + 5_000, "reading": {"flow": 2}}
    driver.advance_stream_time("readings", FORGET + 5_000 + SILENCE)
    assert _alerts(driver) == [("tap", "silent", FORGET + 5_000, FORGET + 5_000 + SILENCE)]


# --- running sum with a timeout ------------------------------------------------------------


def test_running_sum_timeout_flushes_at_the_threshold_or_after_inactivity() -> None:
    assert (running_sum_timeout.THRESHOLD, running_sum_timeout.IDLE_MS) == (100, 30_000)
    driver = TopologyTestDriver(running_sum_timeout.topology)
    for key, amount, ts in [
        ("ann", 40, 0),
        ("bob", 10, 5_000),
        ("ann", 70, 10_000),  # ann reaches 110: flushed, her timer cancelled
        ("ann", 5, 20_000),
        ("cy", 1, 35_000),  # bob's 30 s of inactivity are over
    ]:
        driver.pipe("amounts", key, amount, timestamp=ts)
    records = driver.read_records("sums-flushed")
    assert [(r.key, json.loads(r.value or b""), r.timestamp) for r in records] == [
        (b"ann", {"sum": 110, "amounts": 2, "flushed": "threshold"}, 10_000),
        (b"bob", {"sum": 10, "amounts": 1, "flushed": "idle"}, 35_000),
    ]
    assert driver.timers("add-up") == [
        ("ann", "default", "stream", 50_000),
        ("cy", "default", "stream", 65_000),
    ]
    driver.advance_stream_time("amounts", 65_000)
    assert driver.read("sums-flushed") == [
        ("ann", {"sum": 5, "amounts": 1, "flushed": "idle"}),
        ("cy", {"sum": 1, "amounts": 1, "flushed": "idle"}),
    ]
    assert list(driver.store("partial-sums").all()) == []
    assert driver.timers("add-up") == []


def test_running_sum_timeout_each_amount_postpones_the_flush() -> None:
    driver = TopologyTestDriver(running_sum_timeout.topology)
    driver.pipe("amounts", "k", 10, timestamp=0)
    driver.pipe("amounts", "k", 10, timestamp=25_000)
    driver.pipe("amounts", "k", 10, timestamp=5_000)  # out of order: the flush stays at 55 s
    assert driver.store("partial-sums").get("k") == {"sum": 30, "amounts": 3, "newest": 25_000}
    driver.advance_stream_time("amounts", 54_999)
    assert driver.read("sums-flushed") == []
    driver.advance_stream_time("amounts", 55_000)
    assert driver.read("sums-flushed") == [("k", {"sum": 30, "amounts": 3, "flushed": "idle"})]
    driver.pipe("amounts", "k", 100, timestamp=56_000)  # starts again from zero
    assert driver.read("sums-flushed") == [
        ("k", {"sum": 100, "amounts": 1, "flushed": "threshold"})
    ]
    assert driver.timers("add-up") == []


def test_running_sum_timeout_flushes_a_quiet_partition_with_idle_advance() -> None:
    driver = TopologyTestDriver(running_sum_timeout.topology, idle_advance_ms=60_000)
    driver.pipe("amounts", "solo", 42, timestamp=1_000)
    driver.advance_wall_clock(59_999)
    assert driver.read("sums-flushed") == []
    driver.advance_wall_clock(1)  # idle for 60 s: stream time follows the wall clock
    assert driver.read("sums-flushed") == [("solo", {"sum": 42, "amounts": 1, "flushed": "idle"})]


# --- describe -------------------------------------------------------------------------------


def test_processor_describe_shows_the_timers_and_the_ttl(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["describe", "topologies.device_alerts"]) == 0
    assert capsys.readouterr().out.splitlines()[3] == (
        "    Processor: watch (process, stores: last-seen [ttl_ms=86400000 ttl_clock=stream], "
        "timers: watch-timers, on_expire) --> sink-1 <-- source-0"
    )
    assert main(["describe", "topologies.running_sum_timeout"]) == 0
    assert "(process, stores: partial-sums, timers: add-up-timers)" in capsys.readouterr().out


def test_a_device_far_behind_the_partitions_stream_time_looks_silent() -> None:
    driver = TopologyTestDriver(device_alerts.topology)
    driver.pipe("readings", "fast", {"v": 1}, timestamp=500_000)
    driver.pipe("readings", "slow", {"v": 1}, timestamp=100_000)  # due at once: 160 s < 500 s
    driver.pipe("readings", "slow", {"v": 2}, timestamp=120_000)
    assert _alerts(driver) == [
        ("slow", "silent", 100_000, 160_000),
        ("slow", "silent", 120_000, 180_000),
    ]
