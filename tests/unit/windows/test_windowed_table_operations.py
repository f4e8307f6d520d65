"""A windowed aggregation's table supports `to_stream()` only, for now: every table operator
(and a join reading it) is refused when the topology is built, naming the table and saying to
work on the stream of its updates, instead of failing on the first record in a worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from processor import Topology, serdes
from processor.dsl import Table
from processor.errors import TopologyError
from processor.testing import TopologyTestDriver
from processor.windows import TumblingWindows

STRING, INT = serdes.StringSerde(), serdes.IntSerde()


def windowed_counts(t: Topology) -> Table[Any, int]:
    return (
        t.stream("clicks", key_serde=STRING, value_serde=STRING)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=100))
        .count(name="per-window")
    )


OPERATIONS: dict[str, Callable[[Topology, Table[Any, int]], object]] = {
    "filter": lambda t, w: w.filter(lambda k, n: n > 1),
    "filter_not": lambda t, w: w.filter_not(lambda k, n: n > 1),
    "map_values": lambda t, w: w.map_values(lambda n: n * 2),
    "group_by": lambda t, w: w.group_by(lambda k, n: k.key, key_serde=STRING),
    "join": lambda t, w: w.join(t.table("users", key_serde=STRING), lambda n, u: n),
    "join with it": lambda t, w: t.table("users", key_serde=STRING).join(w, lambda u, n: n),
    "stream join": lambda t, w: t.stream("views", key_serde=STRING).join(w, lambda v, n: n),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_a_table_operation_on_a_windowed_table_is_refused_with_what_to_do(operation: str) -> None:
    t = Topology("clicks")
    counts = windowed_counts(t)
    with pytest.raises(TopologyError) as raised:
        OPERATIONS[operation](t, counts)
    message = str(raised.value)
    assert "'per-window' is a windowed table, which supports to_stream() only" in message
    assert ".to_stream().filter(...)" in message


def test_the_stream_of_a_windowed_tables_updates_filters_as_the_table_would() -> None:
    t = Topology("clicks")
    (
        windowed_counts(t)
        .to_stream()
        .filter(lambda window, n: n > 1)
        .map(lambda window, n: (f"{window.key}@{window.start_ms}", n))
        .to("busy", key_serde=STRING, value_serde=INT)
    )
    driver = TopologyTestDriver(t)
    for ts in (0, 10, 20, 150):
        driver.pipe("clicks", "ann", "x", timestamp=ts)
    assert driver.read("busy") == [("ann@0", 2), ("ann@0", 3)]
