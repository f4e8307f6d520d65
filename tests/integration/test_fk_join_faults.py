"""A table-table foreign-key join against the real broker (issue 17): three workers with a
standby each, exactly-once, SIGKILLed three times (one comes back without its state) while both
tables change: orders moving between customers, to no customer and to customers that never
exist, orders and customers deleted and created again, customers renamed. The same tables are
joined inner and left (`fk_faults_scenario`).

Once the input ends and the workers settle, each join's view (the last committed value per key
of its output topic, a tombstone removing the key) is exactly the join of the final tables, its
result store's changelog holds that view, and its subscription store's changelog holds one
subscription per live order with a customer, carrying the hash of the order's final value (a
lost unsubscribe shows there even where the hash check hides it from the output).

Exactly-once specific, and exact: each output is one value the order had joined with one value
its customer had, and per order the outputs never go back, neither to an older value of the
order nor, per customer, to an older value of the customer. A left row's task drops an answer
made for a value the row no longer has and answers arrive in the order the customer's task made
them, so one run of the input emits in that order; at-least-once replays input from the last
committed offsets after a SIGKILL, and what the first run emitted after those offsets stays in
the output, followed by the replay's older values."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.integration.fk_faults_scenario import (
    CUSTOMER_PARTITIONS,
    INNER,
    LEFT,
    Reference,
    Row,
    Update,
    generate,
    joined,
    lanes,
    reference,
    rev_of,
)
from tests.integration.test_state_faults import Cluster, new_cluster
from tests.integration.test_state_faults import cluster_factory as cluster_factory
from tests.integration.test_windows_faults import (
    EXACTLY_ONCE,
    held_standbys,
    produce_with_kills,
    start_all,
)
from tests.integration.timer_scenario import read_changelog
from tests.integration.window_scenario import EventProducer, Producible, Result, Results
from tests.integration.workers import PARTITIONS
from tests.kafka_helpers import create_topic

TOPOLOGY = "tests.integration.fk_faults_scenario:orders_with_customer"
STANDBY = ["--num-standby-replicas", "1"]
# The orders' tasks (their table, the subscriptions they send, the answers they join) and the
# customers' (their table, the subscription stores).
TASKS = PARTITIONS + CUSTOMER_PARTITIONS


class TableProducer(EventProducer):
    """Produces `Update`s of either table to their topic and partition (acks=all)."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        super().__init__(bootstrap, topics["orders"])
        self._topics = topics

    def send(self, batch: Iterable[tuple[int, Producible]], timeout: float = 30.0) -> None:
        for _, update in batch:
            assert isinstance(update, Update)
            self._producer.produce(
                self._topics[update.topic],
                key=update.key.encode(),
                value=update.payload,
                partition=update.partition,
            )
        left = self._producer.flush(timeout)
        assert left == 0, f"{left} records unacknowledged"


def view(results: Results) -> dict[str, Any]:
    """The last value per key; a tombstone removes its key."""
    latest: dict[str, Any] = {}
    for result in results.all:
        if result.value is None:
            latest.pop(result.key, None)
        else:
            latest[result.key] = result.value
    return latest


def test_exactly_once_foreign_key_join_converges_to_the_join_of_the_final_tables(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    updates = generate(seed=41, updates=3_000)
    expected = reference(updates)
    assert len(expected.inner) < len(expected.left) == len(expected.orders)
    assert any(row["customer"] is None for row in expected.orders.values())

    app = topics["PROCESSOR_APPLICATION_ID"]
    env = {
        **topics,
        "TEST_SECOND_SOURCE_TOPIC": f"{app}-customers",
        "TEST_SECOND_SINK_TOPIC": f"{app}-left",
    }
    create_topic(kafka_bootstrap, env["TEST_SECOND_SOURCE_TOPIC"], CUSTOMER_PARTITIONS)
    create_topic(kafka_bootstrap, env["TEST_SECOND_SINK_TOPIC"], PARTITIONS)
    cluster = new_cluster(
        cluster_factory, kafka_bootstrap, env, tmp_path, TOPOLOGY, *EXACTLY_ONCE, *STANDBY
    )
    start_all(cluster, ["f0", "f1", "f2"], tasks=TASKS)
    inner = Results(kafka_bootstrap, env["TEST_SINK_TOPIC"], json.loads, tombstones=True)
    left = Results(kafka_bootstrap, env["TEST_SECOND_SINK_TOPIC"], json.loads, tombstones=True)
    producer = TableProducer(
        kafka_bootstrap,
        {"orders": env["TEST_SOURCE_TOPIC"], "customers": env["TEST_SECOND_SOURCE_TOPIC"]},
    )
    started = time.monotonic()
    kills = produce_with_kills(
        cluster,
        producer,
        lanes(updates),
        inner,
        seed=17,
        restart_after_s=(1.0, 1.0, 9.0),
        wipe_state=(False, True, False),
        tasks=TASKS,
    )
    produced = time.monotonic()

    # Until both views are the reference (or a timeout: the comparison says what differs),
    # then 3 s more: a settled join changes nothing more.
    deadline = time.monotonic() + 90
    while (view(inner), view(left)) != (expected.inner, expected.left):
        if time.monotonic() > deadline:
            break
        inner.poll(0.1)
        left.poll(0.1)
    compared = time.monotonic()
    inner.poll(1.5)
    left.poll(1.5)
    print(
        f"{len(updates)} updates produced in {produced - started:.0f}s, views compared "
        f"{compared - produced:.0f}s later; {len(inner.all)} inner and {len(left.all)} left "
        f"outputs for {len(expected.inner)} and {len(expected.left)} rows; SIGKILL {kills}"
    )
    inner.close()
    left.close()
    assert_same_view(view(inner), expected.inner, "inner")
    assert_same_view(view(left), expected.left, "left")

    for how, results in (("inner", inner.all), ("left", left.all)):
        problems = never_back(results, updates, inner=how == "inner")
        assert not problems, f"{how}: {len(problems)} problems, e.g.\n" + "\n".join(problems[:5])
    assert held_standbys(cluster), "no worker held a standby task"

    for name, want in ((INNER, expected.inner), (LEFT, expected.left)):
        check_stores(kafka_bootstrap, app, name, want, expected)


def assert_same_view(got: dict[str, Any], want: dict[str, Row], how: str) -> None:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    assert not (missing or extra or wrong), (
        f"{how}: {len(missing)} rows missing (e.g. {missing[:3]}), {len(extra)} extra (e.g. "
        f"{[(k, got[k]) for k in extra[:3]]}), {len(wrong)} wrong (e.g. "
        f"{[(k, got[k], want[k]) for k in wrong[:3]]})"
    )


def never_back(results: list[Result], updates: list[Update], *, inner: bool) -> list[str]:
    """What in `results` (one join's outputs, in the order of their partitions) is not one
    value of the order joined with one value of its customer, or goes back: per order to an
    older value of the order, per order and customer to an older value of the customer."""
    problems: list[str] = []
    order_rev: dict[str, int] = {}
    customer_rev: dict[tuple[str, str], int] = {}
    for result in results:
        if result.value is None:
            continue
        key, value = result.key, result.value
        made_by = updates[value["rev"]]
        if (made_by.topic, made_by.key) != ("orders", key) or made_by.row is None:
            problems.append(f"{key}: {value} names no value the order had")
            continue
        customer_id = made_by.row["customer"]
        name = value["name"]
        customer: Row | None = None
        if name is not None:
            customer = updates[rev_of(name)].row
            if updates[rev_of(name)].key != customer_id or customer is None:
                problems.append(f"{key}: {value} names no value of customer {customer_id}")
                continue
        elif inner:
            problems.append(f"{key}: {value} is an inner join's result without a customer")
        if value != joined(made_by.row, customer):
            problems.append(f"{key}: {value} is not the join of {made_by.row} and {customer}")
        if value["rev"] < order_rev.get(key, -1):
            problems.append(f"{key}: {value} after the order's value {order_rev[key]}")
        order_rev[key] = value["rev"]
        if name is not None:
            seen = customer_rev.get((key, customer_id), -1)
            if rev_of(name) < seen:
                problems.append(f"{key}: {value} after {customer_id}'s value {seen}")
            customer_rev[key, customer_id] = rev_of(name)
    return problems


def check_stores(
    bootstrap: str, app: str, name: str, want: dict[str, Row], expected: Reference
) -> None:
    """Join `name`'s result store's changelog holds its view, and its subscription store's
    changelog one subscription per live order with a customer, with its final value's hash."""
    results = read_changelog(bootstrap, f"{app}-{name}-changelog")
    stored = {k.decode(): json.loads(v) for k, v in results.items() if v is not None}
    assert_same_view(stored, want, f"{name}'s changelog")
    subscriptions = read_changelog(
        bootstrap, f"{app}-{name}-subscription-store-changelog", CUSTOMER_PARTITIONS
    )
    live = {k: v for k, v in subscriptions.items() if v is not None}
    assert set(live) == set(expected.subscriptions), (
        f"{name}: {len(set(live) - set(expected.subscriptions))} subscriptions too many, "
        f"{len(set(expected.subscriptions) - set(live))} missing"
    )
    assert live == expected.subscriptions, f"{name}: subscriptions with another value's hash"
