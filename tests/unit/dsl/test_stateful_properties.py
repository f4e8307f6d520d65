"""Properties of the stateful operators over random input, checked against plain Python models."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from processor import Topology, serdes
from processor.testing import TopologyTestDriver

STR = serdes.StringSerde()
INT = serdes.IntSerde()

# Few keys, so that keys repeat; values that fit IntSerde's 64 bits even when summed.
keys = st.sampled_from(["a", "b", "c", "ab", "", "é"])
values = st.integers(min_value=-(2**40), max_value=2**40)
records = st.lists(st.tuples(keys, values), max_size=40)

fast = settings(max_examples=60, deadline=None)


def _counting_and_summing() -> Topology:
    topology = Topology("props")
    grouped = topology.stream("in", key_serde=STR, value_serde=INT).group_by_key()
    grouped.count(name="counts").to_stream().to("counts-out")
    grouped.aggregate(
        lambda: 0, lambda _k, v, total: total + v, value_serde=INT, name="sums"
    ).to_stream().to("sums-out")
    return topology


def _run(topology: Topology, pairs: list[tuple[str, int]]) -> TopologyTestDriver:
    driver = TopologyTestDriver(topology)
    for key, value in pairs:
        driver.pipe("in", key, value)
    return driver


@fast
@given(records)
def test_count_equals_a_counter(pairs: list[tuple[str, int]]) -> None:
    driver = _run(_counting_and_summing(), pairs)
    expected = Counter(key for key, _ in pairs)
    assert dict(driver.store("counts").all()) == dict(expected)
    # one update per record, each the running count of its key
    running: Counter[str] = Counter()
    updates = []
    for key, _ in pairs:
        running[key] += 1
        updates.append((key, running[key]))
    assert driver.read("counts-out") == updates


@fast
@given(records)
def test_aggregate_sum_equals_the_model(pairs: list[tuple[str, int]]) -> None:
    driver = _run(_counting_and_summing(), pairs)
    model: dict[str, int] = {}
    updates = []
    for key, value in pairs:
        model[key] = model.get(key, 0) + value
        updates.append((key, model[key]))
    assert dict(driver.store("sums").all()) == model
    assert driver.read("sums-out") == updates


@fast
@given(st.lists(records, max_size=5))
def test_last_output_and_changelog_value_per_key_is_the_store_content(
    batches: list[list[tuple[str, int]]],
) -> None:
    # Batches of records, split by flat_map from one input record each, so that one commit
    # covers several updates of a key.
    topology = Topology("props")
    topology.stream("in", key_serde=STR, value_serde=serdes.JsonSerde()).flat_map(
        lambda _k, batch: [(key, value) for key, value in batch]
    ).group_by_key(value_serde=INT, name="regroup").count(name="counts").to_stream().to(
        "counts-out", value_serde=INT
    )
    driver = TopologyTestDriver(topology)
    last_output: dict[str, int] = {}
    last_changelog: dict[str, int] = {}
    for batch in batches:
        driver.pipe("in", None, [list(pair) for pair in batch])
        last_output.update(driver.read("counts-out"))
        changelog = driver.read("props-counts-changelog")
        # the write-back cache sends each key changed in the commit once
        assert [key for key, _ in changelog] == list(dict.fromkeys(key for key, _ in batch))
        last_changelog.update(changelog)
    store = dict(driver.store("counts").all())
    assert last_output == store
    assert last_changelog == store
    assert store == dict(Counter(key for batch in batches for key, _ in batch))
