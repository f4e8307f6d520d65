"""Timers and state expiry in process() against the real broker (issue 16): three workers with a
standby each, SIGKILLed three times while commands flow. Under exactly-once every timer that
came due fires exactly once, none fires for a replaced or cancelled time, each expiry is told
once, and afterwards expired keys are gone from the store (changelog tombstones), from queries
and from standbys' copies, while live keys are served. Under at-least-once nothing is lost and
nothing that should not happen does.

The expected outputs are computed from the produced input (`timer_scenario`); the test driver
agrees with that reference (`tests/unit/topology/test_timer_reference.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from processor.query.partitioner import partition_for
from tests.integration.failover import last_assignment
from tests.integration.test_state_faults import Cluster, new_cluster
from tests.integration.test_state_faults import cluster_factory as cluster_factory
from tests.integration.test_windows_faults import (
    EXACTLY_ONCE,
    STEPS,
    held_standbys,
    produce_with_kills,
    start_all,
)
from tests.integration.timer_scenario import (
    OPERATOR,
    STORE,
    Command,
    Expected,
    differences,
    generate,
    read_changelog,
    reference,
    with_tail,
)
from tests.integration.window_scenario import EventProducer, Results
from tests.integration.workers import PARTITIONS

TIMING = "tests.worker_topologies:timing"
STANDBY = ["--num-standby-replicas", "1"]


def checked_reference(partitions: list[list[Command]]) -> Expected:
    """The reference for `partitions`, which must exercise every case the test is about."""
    expected = reference(partitions)
    assert not expected.pending, "every timer is due by the end of the input"
    for case in ("fired", "replaced", "cancelled", "expired on write", "expired by pass"):
        assert expected.stats[case] > 0, f"the input has no case {case!r}: {expected.stats}"
    assert expected.superseded and expected.live and expected.expired
    return expected


def run(
    cluster: Cluster,
    bootstrap: str,
    sink: str,
    partitions: list[list[Command]],
    expected: Expected,
    *,
    seed: int,
    restart_after_s: tuple[float, float, float],
    wipe_state: tuple[bool, bool, bool],
    batches: int = STEPS,
) -> Results:
    """Produce `partitions` while SIGKILLing workers (`produce_with_kills`: one comes back at
    once to its own state, one without its state, one after its tasks moved to the others),
    and read the sink."""
    results = Results(bootstrap, sink, bytes.decode)
    producer = EventProducer(bootstrap, cluster.env["TEST_SOURCE_TOPIC"])
    started = time.monotonic()
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
    # Then until every expected output is in (or a timeout: the comparison says what is
    # missing), and 3 s more, for repeats.
    deadline = time.monotonic() + 90
    while len(results.all) < sum(expected.outputs.values()) and time.monotonic() < deadline:
        results.poll(0.2)
    results.poll(3.0)
    print(
        f"{sum(map(len, partitions))} records, {len(results.all)} outputs "
        f"({dict(expected.stats)}) in {time.monotonic() - started:.0f}s; SIGKILL {kills}"
    )
    return results


def test_exactly_once_timers_fire_once_and_expired_keys_are_gone_through_sigkills(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    """Each output of the reference exactly once and nothing else, then the store, its
    standby copies and the query API hold the live keys only, and no timer is left."""
    partitions = with_tail(generate(seed=31, records_per_partition=2_500))
    expected = checked_reference(partitions)
    cluster = new_cluster(
        cluster_factory, kafka_bootstrap, topics, tmp_path, TIMING, *EXACTLY_ONCE, *STANDBY
    )
    start_all(cluster, ["t0", "t1", "t2"])
    results = run(
        cluster,
        kafka_bootstrap,
        topics["TEST_SINK_TOPIC"],
        partitions,
        expected,
        seed=8,
        restart_after_s=(1.0, 1.0, 9.0),
        wipe_state=(False, True, False),
    )
    got = [(r.key, r.value, r.timestamp) for r in results.all]
    results.close()
    problems = differences(got, expected)
    assert not problems, "\n".join(problems)
    assert held_standbys(cluster), "no worker held a standby task"

    check_changelogs(kafka_bootstrap, topics["PROCESSOR_APPLICATION_ID"], expected)
    check_queries(cluster, expected)


def test_at_least_once_timers_fire_and_keys_expire_through_sigkills(
    kafka_bootstrap: str, topics: dict[str, str], cluster_factory: list[Cluster], tmp_path: Path
) -> None:
    """At-least-once may repeat a firing or an expiry (they and the commit of the input that
    caused them are not atomic) but loses none, and never fires a replaced or cancelled time;
    the store ends with the live keys only, and no timer is left."""
    partitions = with_tail(generate(seed=32, records_per_partition=1_500))
    expected = checked_reference(partitions)
    cluster = new_cluster(cluster_factory, kafka_bootstrap, topics, tmp_path, TIMING, *STANDBY)
    start_all(cluster, ["a0", "a1", "a2"])
    results = run(
        cluster,
        kafka_bootstrap,
        topics["TEST_SINK_TOPIC"],
        partitions,
        expected,
        seed=9,
        restart_after_s=(1.0, 9.0, 1.0),
        wipe_state=(False, False, True),
        # The third kill waits for the second worker to come back, 9 s later.
        batches=400,
    )
    got = {(r.key, r.value, r.timestamp) for r in results.all}
    results.close()
    missing = set(expected.outputs) - got
    assert not missing, f"{len(missing)} outputs lost, e.g. {sorted(missing)[:3]}"
    extra = got - set(expected.outputs)
    assert not extra, f"{len(extra)} outputs that should not be, e.g. {sorted(extra)[:3]}"
    print(f"{len(results.all) - sum(expected.outputs.values())} outputs repeated")
    check_changelogs(kafka_bootstrap, topics["PROCESSOR_APPLICATION_ID"], expected)


def check_changelogs(bootstrap: str, app: str, expected: Expected) -> None:
    """The store: each expired key's last changelog record is a tombstone, each live key's its
    last value (after its 8-byte write time); no timer is left."""
    stored = read_changelog(bootstrap, f"{app}-{STORE}-changelog")
    tombstoned = {k.decode() for k, v in stored.items() if v is None}
    assert tombstoned == expected.expired
    assert {k.decode(): v[8:].decode() for k, v in stored.items() if v is not None} == (
        expected.live
    )
    timers = read_changelog(bootstrap, f"{app}-{OPERATOR}-timers-changelog")
    assert timers and all(v is None for v in timers.values()), "every timer fired and was removed"


# -- the query API ---------------------------------------------------------------------------


def check_queries(cluster: Cluster, expected: Expected) -> None:
    """Every worker answers each key ever written (forwarding to its owner) with its live value,
    or not found once it expired; lists the live keys and no other; and the copies it holds of
    its tasks, active and standby, hold the live keys of those tasks and no other."""
    wait_until_settled(cluster)
    keys = sorted(expected.expired | set(expected.live))
    task_of = {key: f"0_{partition_for(key.encode(), PARTITIONS)}" for key in keys}
    copies = 0
    for instance, worker in cluster.workers.items():
        url = worker.url()
        answers = eventually(partial(post_keys, url, keys))
        found = {a["key"]: a["value"] for a in answers if a["found"]}
        assert found == expected.live, f"{instance} answered {found}"
        listed = eventually(partial(entries, url))
        assert dict(listed) == expected.live, f"{instance} listed {listed}"
        deadline = time.monotonic() + 60
        # A standby may still be catching up, and a rebalance move copies (503): until the
        # copies hold the live keys and nothing else.
        while True:
            held = last_assignment(worker)
            assert held is not None
            tasks = held.active | held.standby
            wanted = {k: v for k, v in expected.live.items() if task_of[k] in tasks}
            local = {"scope": "local", "stale": "true", "tasks": ",".join(sorted(tasks))}
            here = entries(url, **local)
            if here is not None and dict(here) == wanted:
                break
            assert time.monotonic() < deadline, f"{instance}'s copies of {tasks} hold {here}"
            time.sleep(0.5)
        copies += len(held.standby)
    assert copies == PARTITIONS, "each task has a standby copy, checked above"


def wait_until_settled(cluster: Cluster, timeout: float = 60.0) -> None:
    """Until every worker has accepted an assignment of all three members in which each task
    has an active and a standby copy."""
    deadline = time.monotonic() + timeout
    while True:
        held = [last_assignment(w) for w in cluster.workers.values()]
        if all(h is not None and h.members == set(cluster.workers) for h in held):
            actives = [t for h in held if h is not None for t in h.active]
            standbys = [t for h in held if h is not None for t in h.standby]
            if len(set(actives)) == len(actives) == len(standbys) == PARTITIONS:
                return
        assert time.monotonic() < deadline, f"assignments: {held}"
        time.sleep(0.5)


def eventually(read: Callable[[], Any], timeout: float = 60.0) -> Any:
    """What `read` returns once it does not return None (the application may be rebalancing
    after the last restart: 503 until every task has an owner)."""
    deadline = time.monotonic() + timeout
    while (answer := read()) is None:
        assert time.monotonic() < deadline, "the query API did not answer"
        time.sleep(0.5)
    return answer


def post_keys(url: str, keys: list[str]) -> list[dict[str, Any]] | None:
    response = httpx.post(f"{url}/v1/stores/{STORE}/keys", json={"keys": keys}, timeout=30)
    return None if response.status_code == 503 else _ok(response)["results"]


def entries(url: str, **params: str) -> list[tuple[str, Any]] | None:
    """Every entry of the store, a page at a time."""
    listed: list[tuple[str, Any]] = []
    after: str | None = None
    while True:
        page = {**params, "limit": "50", **({"after": after} if after else {})}
        response = httpx.get(f"{url}/v1/stores/{STORE}/entries", params=page, timeout=30)
        if response.status_code == 503:
            return None
        body = _ok(response)
        listed.extend((e["key"], e["value"]) for e in body["entries"])
        after = body["next"]
        if after is None:
            assert len(listed) == len(dict(listed)), "each key once"
            return listed


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()
