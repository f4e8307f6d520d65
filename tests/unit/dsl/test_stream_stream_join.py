"""Stream-stream joins through the test driver, with exact outputs: Kafka Streams' published
semantics table, when unmatched records come out, late records, duplicates, self-joins,
repartitioning, and what a topology refuses (`processor.topology.stream_stream_join`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from processor import Topology
from processor.errors import TopologyError
from processor.serdes import StringSerde
from processor.state.join_buffer import JoinBuffer
from processor.testing import TopologyTestDriver
from processor.topology.handling import Outcome
from processor.windows import JoinWindows

# Kafka Streams' documentation, "Semantics of stream-stream joins": one key, every record of
# both sides within one join window; (timestamp, side, value), None: a null value.
SEMANTICS_INPUT: list[tuple[int, str, str | None]] = [
    (1, "left", None),
    (2, "right", None),
    (3, "left", "A"),
    (4, "right", "a"),
    (5, "left", "B"),
    (6, "right", "b"),
    (7, "left", None),
    (8, "right", None),
    (9, "left", "C"),
    (10, "right", "c"),
    (11, "right", None),
    (12, "left", None),
    (13, "right", None),
    (14, "right", "d"),
    (15, "left", "D"),
]
# The same for inner, left and outer joins: nothing is left unmatched.
SEMANTICS_JOINED: dict[int, list[tuple[str, str]]] = {
    4: [("A", "a")],
    5: [("B", "a")],
    6: [("A", "b"), ("B", "b")],
    9: [("C", "a"), ("C", "b")],
    10: [("A", "c"), ("B", "c"), ("C", "c")],
    14: [("A", "d"), ("B", "d"), ("C", "d")],
    15: [("D", "a"), ("D", "b"), ("D", "c"), ("D", "d")],
}


def _pair(left: Any, right: Any) -> str:
    return f"{left}|{right}"


def _driver(
    how: str, windows: JoinWindows, *, self_join: bool = False, name: str = "j"
) -> TopologyTestDriver:
    t = Topology("joins")
    left = t.stream("left", key_serde=StringSerde(), value_serde=StringSerde())
    right = (
        left if self_join else t.stream("right", key_serde=StringSerde(), value_serde=StringSerde())
    )
    left.join(right, _pair, window=windows, how=how, name=name).to("out")
    return TopologyTestDriver(t)


def _out(driver: TopologyTestDriver) -> list[tuple[str | None, str | None, int]]:
    serde = StringSerde()
    return [
        (serde.deserialize(r.key), serde.deserialize(r.value), r.timestamp)
        for r in driver.read_records("out")
    ]


@pytest.mark.parametrize("how", ["inner", "left", "outer"])
def test_the_published_semantics_table(how: str) -> None:
    driver = _driver(how, JoinWindows.of(15_000))
    for ts, side, value in SEMANTICS_INPUT:
        driver.pipe(side, "k", value, timestamp=ts)
        expected = [("k", _pair(a, b), ts) for a, b in SEMANTICS_JOINED.get(ts, [])]
        assert _out(driver) == expected, f"at {ts}"


def test_a_left_join_emits_an_unmatched_record_once_nothing_can_match_it() -> None:
    # Retention 10 + 5 + 2 = 17: A@0 can still match a right record at 5 arriving up to stream
    # time 5 + before + grace = 17.
    driver = _driver("left", JoinWindows(before_ms=10, after_ms=5, grace_ms=2))
    driver.pipe("left", "k", "A", timestamp=0)
    driver.pipe("right", "x", "x", timestamp=17)  # stream time 17: not yet
    assert _out(driver) == []
    driver.pipe("right", "k", "late", timestamp=5)  # 17 > 5 + 10 + 2? no: joins A
    assert _out(driver) == [("k", "A|late", 5)]
    driver.pipe("left", "k", "B", timestamp=18)
    driver.pipe("right", "y", "y", timestamp=40)  # B@18 waits until stream time 36
    assert _out(driver) == [("k", "B|None", 18)]


def test_kafka_streams_spurious_unmatched_result_does_not_happen() -> None:
    """Kafka Streams emits (A, None) at stream time 11 and then (A, c) for c@10: here A waits
    for c's window to close too."""
    driver = _driver("left", JoinWindows.of(10))
    driver.pipe("left", "k", "A", timestamp=0)
    driver.pipe("right", "z", "z", timestamp=11)
    driver.pipe("right", "k", "c", timestamp=10)
    driver.pipe("right", "z", "z", timestamp=21)
    assert _out(driver) == [("k", "A|c", 10)]


def test_an_outer_join_emits_both_sides_unmatched_in_timestamp_order() -> None:
    driver = _driver("outer", JoinWindows.of(5))
    driver.pipe("right", "b", "r1", timestamp=3)
    driver.pipe("left", "a", "l1", timestamp=1)
    driver.pipe("left", "c", "l2", timestamp=3)
    driver.pipe("right", "a", "r2", timestamp=2)
    assert _out(driver) == [("a", "l1|r2", 2)]
    driver.pipe("left", "z", "z", timestamp=14)
    assert _out(driver) == [("c", "l2|None", 3), ("b", "None|r1", 3)]


def test_duplicates_each_join_in_arrival_order() -> None:
    driver = _driver("inner", JoinWindows.of(0))
    for value in ("A1", "A2"):
        driver.pipe("left", "k", value, timestamp=5)
    driver.pipe("right", "k", "a", timestamp=5)
    driver.pipe("right", "k", "a", timestamp=5)
    assert _out(driver) == [("k", "A1|a", 5), ("k", "A2|a", 5)] * 2


def test_a_late_record_is_dropped_and_counted() -> None:
    driver = _driver("outer", JoinWindows(before_ms=0, after_ms=3, grace_ms=1))
    driver.pipe("right", "k", "a", timestamp=10)
    driver.pipe("left", "k", "A", timestamp=5)  # 10 > 5 + 3 + 1: late
    assert _out(driver) == []
    assert driver.accounting.totals()[Outcome.LATE] == 1
    driver.pipe("left", "k", "B", timestamp=6)  # 10 = 6 + 3 + 1: on time, no match
    driver.pipe("left", "k", "C", timestamp=7)
    assert driver.accounting.totals()[Outcome.LATE] == 1
    assert _out(driver) == [("k", "C|a", 10)]


def test_a_stream_joins_itself_both_ways() -> None:
    driver = _driver("inner", JoinWindows.of(10), self_join=True)
    driver.pipe("left", "k", "A", timestamp=0)
    driver.pipe("left", "k", "B", timestamp=5)
    assert _out(driver) == [("k", "A|A", 0), ("k", "B|A", 5), ("k", "A|B", 5), ("k", "B|B", 5)]


def test_a_null_key_is_emitted_unmatched_at_once_by_a_left_join_only() -> None:
    for how, expected in (("left", [(None, "A|None", 4)]), ("inner", [])):
        driver = _driver(how, JoinWindows.of(10))
        driver.pipe("left", None, "A", timestamp=4)
        driver.pipe("left", "k", None, timestamp=5)
        assert _out(driver) == expected


def test_records_leave_the_buffers_after_the_retention() -> None:
    driver = _driver("inner", JoinWindows(before_ms=2, after_ms=3, grace_ms=1))
    driver.pipe("left", "k", "A", timestamp=0)
    driver.pipe("right", "k", "a", timestamp=3)
    buffer = driver._store("j-left-buffer")
    assert isinstance(buffer, JoinBuffer)
    assert [r[:2] for r in buffer.records()] == [("k", 0)]
    driver.pipe("right", "z", "z", timestamp=7)  # 7 > 0 + 6
    assert list(buffer.records()) == []


def test_keys_changed_upstream_go_through_repartition_topics() -> None:
    t = Topology("rekeyed")
    left = t.stream("left", key_serde=StringSerde(), value_serde=StringSerde())
    right = t.stream("right", key_serde=StringSerde(), value_serde=StringSerde())
    rekeyed = left.map(lambda k, v: (v[0], v))
    rekeyed.join(right, _pair, window=JoinWindows.of(5), name="clicks").to("out")
    text = t.describe()
    assert "clicks-left-repartition" in text and "clicks-right-repartition" not in text
    assert "clicks-left-buffer, clicks-right-buffer" in text
    driver = TopologyTestDriver(t)
    driver.pipe("left", "x", "kA", timestamp=1)
    driver.pipe("right", "k", "a", timestamp=2)
    assert _out(driver) == [("k", "kA|a", 2)]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (None, "needs window=JoinWindows"),
        (5_000, "not int"),
    ],
)
def test_a_join_without_join_windows_is_refused(window: Any, message: str) -> None:
    t = Topology("bad")
    left = t.stream("left", key_serde=StringSerde(), value_serde=StringSerde())
    right = t.stream("right", key_serde=StringSerde(), value_serde=StringSerde())
    with pytest.raises(TopologyError, match=message):
        left.join(right, _pair, window=window)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"before_ms": -1, "after_ms": 0}, "before_ms must be >= 0"),
        ({"before_ms": 0, "after_ms": 1.5}, "after_ms must be an int"),
        ({"before_ms": 1, "after_ms": 1, "grace_ms": -3}, "grace_ms must be >= 0"),
    ],
)
def test_join_windows_refuse_bad_bounds(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        JoinWindows(**kwargs)


def test_the_readme_example_runs() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    [block] = [b for b in blocks if b.startswith("# joins: stream-stream")]
    exec(compile(block, "README.md", "exec"), {})


def test_the_buffers_changelogs_delete_by_time() -> None:
    from processor.runtime.internal_topics import changelog_config
    from processor.windows.spec import DEFAULT_RETENTION_MARGIN_MS

    t = Topology("retained")
    left = t.stream("left", key_serde=StringSerde(), value_serde=StringSerde())
    right = t.stream("right", key_serde=StringSerde(), value_serde=StringSerde())
    windows = JoinWindows(before_ms=10, after_ms=20, grace_ms=5)
    left.join(right, _pair, window=windows, how="outer", name="j").to("out")
    [sub] = t.subtopologies()
    retention = str(35 + DEFAULT_RETENTION_MARGIN_MS)
    assert {s.name: changelog_config(s) for s in sub.stores} == {
        name: {"cleanup.policy": "compact,delete", "retention.ms": retention}
        for name in ("j-left-buffer", "j-right-buffer", "j-outer")
    }
