"""A windowed aggregation's table takes `filter`, `filter_not` and `map_values` (as Kafka Streams'
windowed KTable does): each update carries the window's aggregate before it, so a window that
stops passing a filter becomes a tombstone, and one that never passed forwards nothing, with
time windows, sessions (whose merges retract sessions) and sliding windows alike. What it does
not take yet (a store of their own via `name=`, `group_by`, joins) is refused when the topology
is built, naming the table and saying to work on the stream of its updates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from processor import Topology, serdes
from processor.dsl import Table
from processor.errors import TopologyError
from processor.testing import TopologyTestDriver
from processor.windows import SessionWindows, SlidingWindows, TumblingWindows, Windows

STRING, INT = serdes.StringSerde(), serdes.IntSerde()


def windowed_counts(
    t: Topology, windows: Windows | None = None, emit: str = "update"
) -> Table[Any, int]:
    return (
        t.stream("clicks", key_serde=STRING, value_serde=STRING)
        .group_by_key()
        .windowed_by(windows or TumblingWindows(size_ms=100), emit=emit)  # type: ignore[arg-type]
        .count(name="per-window")
    )


def written(table: Table[Any, Any], t: Topology) -> None:
    table.to_stream().map(lambda w, n: (f"{w.key}@{w.start_ms}-{w.end_ms}", n)).to(
        "out", key_serde=STRING, value_serde=INT
    )


def run(t: Topology, timestamps: list[int]) -> list[tuple[str, int | None]]:
    driver = TopologyTestDriver(t)
    for ts in timestamps:
        driver.pipe("clicks", "ann", "x", timestamp=ts)
    return driver.read("out")


def test_a_filter_forwards_the_windows_that_pass_and_map_values_changes_them() -> None:
    t = Topology("clicks")
    written(windowed_counts(t).filter(lambda w, n: n > 1).map_values(lambda n: n * 10), t)
    assert run(t, [0, 10, 20, 150]) == [("ann@0-100", 20), ("ann@0-100", 30)]


def test_a_window_that_stops_passing_the_filter_becomes_a_tombstone() -> None:
    t = Topology("latest")
    latest = (
        t.stream("readings", key_serde=STRING, value_serde=INT)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=100))
        .reduce(lambda _old, new: new, name="latest")
    )
    written(latest.filter_not(lambda w, v: v <= 5), t)
    driver = TopologyTestDriver(t)
    for ts, value in ((0, 10), (10, 3), (20, 2), (30, 7)):
        driver.pipe("readings", "ann", value, timestamp=ts)
    assert driver.read("out") == [("ann@0-100", 10), ("ann@0-100", None), ("ann@0-100", 7)]


def test_sessions_merged_away_are_retracted_only_where_they_had_passed() -> None:
    t = Topology("sessions")
    written(windowed_counts(t, SessionWindows(inactivity_gap_ms=10)).filter(lambda w, n: n >= 2), t)
    # [0,0] (1, never passed) merges into [0,5] (2): no tombstone for it; [0,5] then merges
    # into [0,8] (3): its tombstone comes first.
    assert run(t, [0, 5, 8]) == [("ann@0-5", 2), ("ann@0-5", None), ("ann@0-8", 3)]


def test_sliding_windows_and_final_results_filter_the_same_way() -> None:
    t = Topology("sliding")
    written(windowed_counts(t, SlidingWindows(max_difference_ms=10)).filter(lambda w, n: n >= 2), t)
    assert run(t, [0, 5]) == [("ann@0-10", 2)]

    final = Topology("final")
    written(windowed_counts(final, emit="final").filter(lambda w, n: n >= 2), final)
    assert run(final, [0, 150, 160, 400]) == [("ann@100-200", 2)]


REFUSED: dict[str, Callable[[Topology, Table[Any, int]], object]] = {
    "filter(name=)": lambda t, w: w.filter(lambda k, n: n > 1, name="busy"),
    "map_values(name=)": lambda t, w: w.map_values(lambda n: n * 2, name="doubled"),
    "group_by": lambda t, w: w.group_by(lambda k, n: k.key, key_serde=STRING),
    "join": lambda t, w: w.join(t.table("users", key_serde=STRING), lambda n, u: n),
    "join with it": lambda t, w: t.table("users", key_serde=STRING).join(w, lambda u, n: n),
    "stream join": lambda t, w: t.stream("views", key_serde=STRING).join(w, lambda v, n: n),
    "group_by after a filter": lambda t, w: w.filter(lambda k, n: True).group_by(
        lambda k, n: k.key, key_serde=STRING
    ),
}


@pytest.mark.parametrize("operation", sorted(REFUSED))
def test_what_a_windowed_table_does_not_take_yet_is_refused_with_what_to_do(
    operation: str,
) -> None:
    t = Topology("clicks")
    counts = windowed_counts(t)
    with pytest.raises(TopologyError) as raised:
        REFUSED[operation](t, counts)
    message = str(raised.value)
    assert "is a windowed table, which supports to_stream(), filter, filter_not and" in message
    assert ".to_stream().map(...)" in message
