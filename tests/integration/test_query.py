"""Queryable state over HTTP on a real broker: every worker answers every key (forwarding to the
owner), whole-store reads return every key once across pages, and during a failover standbys
answer, marked stale."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.failover import last_assignment, standby_lags
from tests.integration.workers import SESSION_TIMEOUT_S, WorkerProcess, start_worker
from tests.kafka_helpers import produce

TOPOLOGY = "tests.worker_topologies:keyed_counting"
STORE = "counts"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[dict[str, WorkerProcess]]:
    workers: dict[str, WorkerProcess] = {}
    yield workers
    for worker in workers.values():
        worker.stop_quietly()


def get_many(url: str, keys: list[str], **params: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with httpx.Client(timeout=60) as client:
        for i in range(0, len(keys), 10_000):
            response = client.post(
                f"{url}/v1/stores/{STORE}/keys", json={"keys": keys[i : i + 10_000], **params}
            )
            assert response.status_code == 200, response.text
            results.extend(response.json()["results"])
    return results


def try_get_many(url: str, keys: list[str]) -> list[dict[str, Any]] | None:
    """None while the application is still starting (no owner yet: 503)."""
    results: list[dict[str, Any]] = []
    for i in range(0, len(keys), 10_000):
        response = httpx.post(
            f"{url}/v1/stores/{STORE}/keys", json={"keys": keys[i : i + 10_000]}, timeout=60
        )
        if response.status_code != 200:
            return None
        results.extend(response.json()["results"])
    return results


def all_entries(url: str, page: int) -> list[tuple[str, Any]]:
    entries: list[tuple[str, Any]] = []
    after: str | None = None
    with httpx.Client(timeout=60) as client:
        while True:
            params: dict[str, Any] = {"limit": page}
            if after is not None:
                params["after"] = after
            response = client.get(f"{url}/v1/stores/{STORE}/entries", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            entries.extend((e["key"], e["value"]) for e in body["entries"])
            after = body["next"]
            if after is None:
                return entries


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def start_three(
    started: dict[str, WorkerProcess], bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    """Workers w0, w1 and w2, each task with one standby, once all three are members (one that
    starts late warms up before it joins, and two can hold every standby meanwhile)."""
    for instance in ("w0", "w1", "w2"):
        started[instance] = start_worker(
            TOPOLOGY,
            bootstrap=bootstrap,
            env=topics,
            workdir=tmp_path,
            instance=instance,
            extra=["--num-standby-replicas", "1"],
        )
    for worker in started.values():
        worker.wait_for_log(r"members \[w0, w1, w2\]; active tasks", 90)


def test_every_worker_answers_every_key_and_the_whole_store_once(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, started: dict[str, WorkerProcess]
) -> None:
    keys = 100_000
    start_three(started, kafka_bootstrap, topics, tmp_path)
    # Key k<i> is counted (i % 3) + 1 times.
    records = [(f"k{i}", b"x") for i in range(keys) for _ in range(i % 3 + 1)]
    # Keyed like Kafka's Java producer, which the query API's routing assumes.
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], records, partitioner="murmur2_random")
    truth = Counter(key for key, _ in records)
    urls = {instance: worker.url() for instance, worker in started.items()}
    names = sorted(truth)

    def settled() -> bool:
        sample = try_get_many(urls["w0"], names[:: keys // 100])
        return sample is not None and all(
            r["found"] and int(r["value"]) == truth[r["key"]] for r in sample
        )

    wait_until(settled, 120, "the counts to be committed")
    time.sleep(1.0)  # the last commit of every task

    for instance, url in urls.items():
        results = get_many(url, names)
        wrong = [r for r in results if not r["found"] or int(r["value"]) != truth[r["key"]]]
        assert not wrong, f"{len(wrong)} wrong answers from {instance}, e.g. {wrong[:2]}"
        answered_by = Counter(r["answered_by"] for r in results)
        assert set(answered_by) == {"w0", "w1", "w2"}, f"forwarded to every owner: {answered_by}"
        assert all(r["role"] == "active" and not r["stale"] for r in results)

    entries = all_entries(urls["w1"], page=7_919)
    assert len(entries) == keys, "each key exactly once"
    assert [k for k, _ in entries] == sorted(k for k, _ in entries), "in key order"
    assert {k: int(v) for k, v in entries} == truth

    # One key, from a worker that does not own it: forwarded, and it says who answered.
    key = names[123]
    owner_task = httpx.get(f"{urls['w0']}/v1/metadata/stores/{STORE}/keys/{key}").json()
    not_owner = next(i for i in urls if i != owner_task["active"])
    answer = httpx.get(f"{urls[not_owner]}/v1/stores/{STORE}/keys/{key}").json()
    assert answer["value"] == str(truth[key]) and answer["answered_by"] == owner_task["active"]
    missing = httpx.get(f"{urls[not_owner]}/v1/stores/{STORE}/keys/no-such-key")
    assert missing.status_code == 404 and "no-such-key" in missing.json()["detail"]


def test_during_a_failover_standbys_answer_marked_stale_then_the_new_active_does(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, started: dict[str, WorkerProcess]
) -> None:
    keys = 20_000
    start_three(started, kafka_bootstrap, topics, tmp_path)
    produce(
        kafka_bootstrap,
        topics["TEST_SOURCE_TOPIC"],
        [(f"k{i}", b"x") for i in range(keys)],
        partitioner="murmur2_random",
    )
    urls = {instance: worker.url() for instance, worker in started.items()}
    names = [f"k{i}" for i in range(keys)]
    wait_until(
        lambda: all(r["found"] for r in try_get_many(urls["w0"], names) or [{"found": False}]),
        120,
        "every key counted",
    )
    wait_until(
        lambda: (
            sum(len(standby_lags(w)) for w in started.values()) >= 6
            and all(v == 0 for w in started.values() for v in standby_lags(w).values())
        ),
        60,
        "standbys to catch up",
    )
    victim = "w1"
    victim_tasks = last_assignment(started[victim]).active  # type: ignore[union-attr]
    metadata = [
        httpx.get(f"{urls['w0']}/v1/metadata/stores/{STORE}/keys/{k}").json() for k in names[:300]
    ]
    victim_keys = [m for m in metadata if m["task"] in victim_tasks]
    assert victim_keys, "some keys live on the victim"
    keys_of_victim = [names[i] for i, m in enumerate(metadata) if m["task"] in victim_tasks]

    started[victim].kill()
    killed_at = time.monotonic()
    survivors = [urls["w0"], urls["w2"]]
    # At once, before the group even notices: standbys answer, and say they are stale.
    for url in survivors:
        results = get_many(url, keys_of_victim, stale=True)
        assert all(r["found"] and r["value"] == "1" for r in results), results[:2]
        assert all(r["stale"] and r["role"] == "standby" and r["lag"] >= 0 for r in results)
        assert all(r["answered_by"] != victim for r in results)
        refused = httpx.post(
            f"{url}/v1/stores/{STORE}/keys", json={"keys": keys_of_victim[:1]}, timeout=30
        )
        assert refused.status_code == 503 and "stale=true" in refused.json()["detail"]

    # Within the failover time, the new active answers without stale.
    def answered_by_active() -> bool:
        response = httpx.post(
            f"{survivors[0]}/v1/stores/{STORE}/keys", json={"keys": keys_of_victim}, timeout=30
        )
        if response.status_code != 200:
            return False
        return all(r["role"] == "active" and r["value"] == "1" for r in response.json()["results"])

    wait_until(answered_by_active, SESSION_TIMEOUT_S + 10, "the new active to answer")
    failover = time.monotonic() - killed_at
    print(f"queries answered by the new active {failover:.1f}s after the SIGKILL")
    assert failover <= SESSION_TIMEOUT_S + 5
