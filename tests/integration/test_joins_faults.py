"""Joins against the real broker (issue 17): three workers with a standby each, SIGKILLed three
times while two co-partitioned topics flow (one comes back at once to its own state, one without
its state, one after its tasks moved to the others; `produce_with_kills`).

- An enrichment (stream-table, left join): under exactly-once every order is emitted once with
  the customer row of the reference; under at-least-once none is lost.
- A click stream (stream-stream, an inner and a left join in `JoinWindows`): under exactly-once
  every matching pair is emitted once by each join, and every impression without a click once by
  the left join, after its window closed; nothing else.

The expected outputs are computed from the produced input (`join_scenario`, whose docstring
says why they do not depend on the order in which a task happens to fetch its two topics)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.join_scenario import (
    BATCHES,
    SECOND,
    JoinProducer,
    JoinRecord,
    Output,
    check_click_stream,
    check_enrichment,
    click_stream,
    differences,
    end_key,
    enrichment,
    flush_records,
    now_ms,
)
from tests.integration.test_state_faults import Cluster, new_cluster
from tests.integration.test_state_faults import cluster_factory as cluster_factory
from tests.integration.test_windows_faults import (
    EXACTLY_ONCE,
    held_standbys,
    produce_with_kills,
    start_all,
)
from tests.integration.window_scenario import Results
from tests.integration.workers import PARTITIONS
from tests.kafka_helpers import create_topic

ENRICH = "tests.integration.stream_table_scenario:enrich"
CLICK_THROUGH = "tests.worker_topologies:click_through"
STANDBY = ["--num-standby-replicas", "1"]


@pytest.fixture
def join_topics(kafka_bootstrap: str, topics: dict[str, str]) -> dict[str, str]:
    """`topics` and a second co-partitioned source: `TEST_SOURCE_TOPIC` holds the orders (or
    impressions), `TEST_SECOND_SOURCE_TOPIC` the customers (or clicks)."""
    second = f"{topics['PROCESSOR_APPLICATION_ID']}-in2"
    create_topic(kafka_bootstrap, second, PARTITIONS)
    return {**topics, SECOND: second}


def run(
    cluster: Cluster,
    bootstrap: str,
    partitions: list[list[JoinRecord]],
    *,
    seed: int,
    restart_after_s: tuple[float, float, float],
    wipe_state: tuple[bool, bool, bool],
    batches: int = BATCHES,
) -> tuple[Results, JoinProducer, str]:
    """Produce `partitions` while SIGKILLing workers; the sink's reader, the producer, and what
    was killed when."""
    results = Results(bootstrap, cluster.env["TEST_SINK_TOPIC"], bytes.decode)
    producer = JoinProducer(bootstrap, cluster.env)
    kills = produce_with_kills(
        cluster,
        producer,
        partitions,
        results,
        seed=seed,
        batches=batches,
        restart_after_s=restart_after_s,
        wipe_state=wipe_state,
    )
    return results, producer, "; ".join(kills)


def read_all(results: Results, count: int, timeout: float = 90.0) -> list[Output]:
    """Until `count` outputs are in (or a timeout: the comparison says what is missing), and
    3 s more, for repeats."""
    deadline = time.monotonic() + timeout
    while len(results.all) < count and time.monotonic() < deadline:
        results.poll(0.2)
    results.poll(3.0)
    got = [(r.key, r.value, r.timestamp) for r in results.all]
    results.close()
    return got


# -- enrichment: stream-table --------------------------------------------------------------


def test_exactly_once_enrichment_gives_each_order_once_with_its_customer_through_sigkills(
    kafka_bootstrap: str,
    join_topics: dict[str, str],
    cluster_factory: list[Cluster],
    tmp_path: Path,
) -> None:
    """Orders left-joined with a customers table updated (and deleted from) while orders flow:
    each order is emitted exactly once, with the customer row the reference gives it (the last
    update of its customer before it in the timeline, or None), at its own timestamp.

    The reference is exact because no order is within `QUIET_STEPS` production steps (half a
    second) of an update of its customer, and timestamps follow production order: whichever way
    a task's fetches of the two topics interleave, and after a restart from the committed
    offsets, timestamp-synchronised input processes every update of an earlier step before the
    order and every update of a later step after it (checked by `check_enrichment`)."""
    # The third kill waits for the second worker to come back, 9 s later: 400 steps.
    partitions = enrichment(seed=41, records_per_partition=2_000, start_ms=now_ms(), batches=400)
    expected = check_enrichment(partitions, batches=400)
    cluster = new_cluster(
        cluster_factory, kafka_bootstrap, join_topics, tmp_path, ENRICH, *EXACTLY_ONCE, *STANDBY
    )
    start_all(cluster, ["e0", "e1", "e2"])
    started = time.monotonic()
    results, _, kills = run(
        cluster,
        kafka_bootstrap,
        partitions,
        seed=11,
        restart_after_s=(1.0, 9.0, 1.0),
        wipe_state=(False, False, True),
        batches=400,
    )
    got = read_all(results, sum(expected.outputs.values()))
    print(
        f"{sum(map(len, partitions))} records, {len(got)} outputs ({dict(expected.stats)}) in "
        f"{time.monotonic() - started:.0f}s; SIGKILL {kills}"
    )
    problems = differences(got, expected.outputs)
    assert not problems, "\n".join(problems)
    assert held_standbys(cluster), "no worker held a standby task"


def test_at_least_once_enrichment_loses_no_order_through_sigkills(
    kafka_bootstrap: str,
    join_topics: dict[str, str],
    cluster_factory: list[Cluster],
    tmp_path: Path,
) -> None:
    """At-least-once may emit an order again (its output and the commit of its offset are not
    atomic), and a retry may see its customer's row as a later update left it (the table's
    changelog and local store can be ahead of the committed input offsets), but no order is
    lost: each order's reference output arrives, and every other output is one of its orders
    with its key and timestamp and a later row of its customer."""
    partitions = enrichment(seed=42, records_per_partition=1_700, start_ms=now_ms())
    expected = check_enrichment(partitions)
    cluster = new_cluster(cluster_factory, kafka_bootstrap, join_topics, tmp_path, ENRICH, *STANDBY)
    start_all(cluster, ["a0", "a1", "a2"])
    started = time.monotonic()
    results, _, kills = run(
        cluster,
        kafka_bootstrap,
        partitions,
        seed=12,
        restart_after_s=(1.0, 1.0, 9.0),
        wipe_state=(False, True, False),
    )
    got = read_all(results, sum(expected.outputs.values()))
    print(
        f"{sum(map(len, partitions))} records, {len(got)} outputs in "
        f"{time.monotonic() - started:.0f}s; SIGKILL {kills}"
    )
    missing = set(expected.outputs) - set(got)
    assert not missing, f"{len(missing)} orders lost, e.g. {sorted(missing)[:3]}"
    wrong = []
    for key, value, ts in set(got) - set(expected.outputs):
        order, _, row = value.partition("+")
        want = expected.orders.get(order)
        if want is None or (key, ts) != (want[0], want[2]) or row not in expected.later[order]:
            wrong.append((key, value, ts))
    assert not wrong, f"{len(wrong)} outputs no retry explains, e.g. {sorted(wrong)[:3]}"
    print(f"{len(got) - len(expected.outputs)} outputs repeated")


# -- click stream: stream-stream, inner and left -------------------------------------------


def test_exactly_once_windowed_joins_give_each_pair_and_each_unmatched_once_through_sigkills(
    kafka_bootstrap: str,
    join_topics: dict[str, str],
    cluster_factory: list[Cluster],
    tmp_path: Path,
) -> None:
    """Impressions joined with clicks within `CLICK_WINDOW` (inner and left), out-of-order
    timestamps within the grace: the sink holds, as a multiset of (key, value, timestamp), each
    matching pair once per join at the later timestamp, and each impression without a click
    once (left join, at its own timestamp), and nothing else.

    The reference is exact because no record is late under any order of processing the task
    could choose (checked by `check_click_stream`: not even after every record of the next
    `LATE_MARGIN_STEPS` steps), and without late records the results do not depend on that
    order. The impressions without a click are emitted as stream time passes their retention,
    during the run (and around the SIGKILLs) and, for the last ones, after a flush record that
    is produced only once the task has processed its whole timeline (its last pair is out), so
    it cannot make a record of the timeline late."""
    partitions = click_stream(seed=51, records_per_partition=1_600, start_ms=now_ms())
    expected = check_click_stream(partitions)
    cluster = new_cluster(
        cluster_factory,
        kafka_bootstrap,
        join_topics,
        tmp_path,
        CLICK_THROUGH,
        *EXACTLY_ONCE,
        *STANDBY,
    )
    start_all(cluster, ["s0", "s1", "s2"])
    started = time.monotonic()
    results, producer, kills = run(
        cluster,
        kafka_bootstrap,
        partitions,
        seed=13,
        restart_after_s=(1.0, 1.0, 9.0),
        wipe_state=(False, True, False),
    )
    ends = {end_key(p) for p in range(PARTITIONS)}
    deadline = time.monotonic() + 90
    while ends - {r.key for r in results.all if r.value.startswith("inner:")}:
        assert time.monotonic() < deadline, "the timelines' last pairs did not all arrive"
        results.poll(0.2)
    producer.send(flush_records(partitions))
    got = read_all(results, sum(expected.outputs.values()))
    print(
        f"{sum(map(len, partitions))} records, {len(got)} outputs ({dict(expected.stats)}) in "
        f"{time.monotonic() - started:.0f}s; SIGKILL {kills}"
    )
    problems = differences(got, expected.outputs)
    assert not problems, "\n".join(problems)
    assert held_standbys(cluster), "no worker held a standby task"
    assert Counter(v.split(":")[0] for _, v, _ in got) == {
        "inner": expected.stats["pairs"],
        "left": expected.stats["pairs"] + expected.stats["impressions without a click"],
    }
