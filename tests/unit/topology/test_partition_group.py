"""Timestamp-synchronised input (`PartitionGroup`): lowest timestamp first, waiting for an empty
input while its records are on the broker, then `max_task_idle_ms` for new ones."""

from __future__ import annotations

import random

from processor.topology.partition_group import (
    BUFFERED_RECORDS_PER_PARTITION,
    UNKNOWN_LAG_WAIT_MS,
    Partition,
    PartitionGroup,
)

STREAM: Partition = ("orders", 0)
TABLE: Partition = ("customers", 0)


def caught_up(partition: Partition) -> int:
    return 0


def drain(group: PartitionGroup[str], now_ms: int = 0) -> list[str]:
    taken = []
    while (record := group.next_ready(now_ms, caught_up)) is not None:
        taken.append(record)
    return taken


def test_the_lowest_timestamp_goes_first_ties_in_the_order_buffered() -> None:
    group: PartitionGroup[str] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=-1)
    for ts, name in [(5, "o5"), (1, "o1"), (9, "o9")]:
        group.add(STREAM, ts, name)
    for ts, name in [(3, "c3"), (5, "c5")]:
        group.add(TABLE, ts, name)
    # A partition's records stay in offset order: o1 waits behind o5 (its head).
    assert drain(group) == ["c3", "o5", "o1", "c5", "o9"]


def test_an_empty_input_with_records_on_the_broker_is_waited_for() -> None:
    group: PartitionGroup[str] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=0)
    group.add(STREAM, 10, "o10")
    lags = {STREAM: 0, TABLE: 7}
    assert group.next_ready(0, lags.get) is None
    assert group.next_ready(60_000, lags.get) is None  # however long: the records will come
    group.add(TABLE, 5, "c5")
    assert group.next_ready(60_000, lags.get) == "c5"


def test_a_caught_up_empty_input_is_passed_by_after_max_task_idle_ms() -> None:
    group: PartitionGroup[str] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=100)
    group.add(STREAM, 10, "o10")
    assert group.next_ready(1_000, caught_up) is None
    assert group.next_ready(1_099, caught_up) is None
    assert group.next_ready(1_100, caught_up) == "o10"


def test_with_the_default_0_a_caught_up_input_is_not_waited_for() -> None:
    group: PartitionGroup[str] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=0)
    group.add(STREAM, 10, "o10")
    assert group.next_ready(5, caught_up) == "o10"


def test_an_unknown_lag_is_waited_for_a_bounded_time() -> None:
    group: PartitionGroup[str] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=0)
    group.add(STREAM, 10, "o10")

    def unknown(partition: Partition) -> int | None:
        return None if partition == TABLE else 0

    assert group.next_ready(0, unknown) is None
    assert group.next_ready(UNKNOWN_LAG_WAIT_MS, unknown) == "o10"


def test_each_empty_input_is_waited_for_from_when_the_task_found_it_empty() -> None:
    group: PartitionGroup[str] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=100)
    group.add(STREAM, 1, "o1")
    group.add(TABLE, 1, "c1")
    assert drain(group, 0) == ["o1"]  # then the stream is empty, caught up: wait for it
    assert group.next_ready(99, caught_up) is None
    assert group.next_ready(100, caught_up) == "c1"
    group.add(STREAM, 2, "o2")
    assert group.next_ready(150, caught_up) is None  # the table is empty from now on
    assert group.next_ready(250, caught_up) == "o2"


def test_over_limit_names_the_inputs_to_pause_and_clear_drops_everything() -> None:
    group: PartitionGroup[int] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=0)
    for i in range(BUFFERED_RECORDS_PER_PARTITION):
        group.add(STREAM, i, i)
    group.add(TABLE, 0, -1)
    assert group.over_limit() == [STREAM]
    group.clear()
    assert (group.buffered, group.over_limit()) == (0, [])


def test_any_interleaving_of_arrivals_gives_the_timestamp_order() -> None:
    """Whatever order the consumer delivers two partitions' records in (each partition's own in
    offset order, here also timestamp order), the task processes them in timestamp order once
    both are buffered: what a stream catching up on a backlog needs."""
    rng = random.Random(17)
    for _ in range(200):
        stream = sorted(rng.sample(range(1000), 20))
        table = sorted(rng.sample(range(1000), 20))
        sources = [STREAM] * len(stream) + [TABLE] * len(table)
        rng.shuffle(sources)
        pending = {STREAM: iter(stream), TABLE: iter(table)}
        group: PartitionGroup[int] = PartitionGroup([STREAM, TABLE], max_task_idle_ms=0)
        for partition in sources:
            ts = next(pending[partition])
            group.add(partition, ts, ts)
        assert drain(group) == sorted(stream + table)
