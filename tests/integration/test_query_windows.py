"""Windows queryable over HTTP on a real broker: a tumbling-window count and a session count over
6 partitions run by two workers with a bearer token and one standby per task. Every window of
every key is read from each worker (a fan-out over both), sessions by overlap, one key's windows
from the worker that does not own it (forwarded, with the token), its standby copy (stale, read
locally), and after its owner is killed, the standby answers stale reads while plain ones are
refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processor.query.client import QueryClient, QueryError
from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import produce

TOPOLOGY = "tests.worker_topologies:windowed_querying"
STORE = "per-minute"
MINUTE = 60_000
T0 = 26_666_667 * MINUTE  # a minute boundary in September 2020
TOKEN = "w1nd0ws"
KEYS = [f"k{i}" for i in range(30)]


def count(i: int, minute: int) -> int:
    """How many records key k<i> has in minute `minute` (0-3)."""
    return (i + minute) % 3 + 1


EXPECTED = {(f"k{i}", T0 + m * MINUTE): count(i, m) for i in range(len(KEYS)) for m in range(4)}


@pytest.fixture
def started() -> Iterator[dict[str, WorkerProcess]]:
    workers: dict[str, WorkerProcess] = {}
    yield workers
    for worker in workers.values():
        worker.stop_quietly()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def counted(windows: list[dict[str, Any]]) -> dict[tuple[str, int], int]:
    return {(w["key"], w["start_ms"]): int(w["value"]) for w in windows}


def test_windows_are_answered_by_any_worker_forwarded_and_from_standbys(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, started: dict[str, WorkerProcess]
) -> None:
    for instance in ("w0", "w1"):
        started[instance] = start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env=topics,
            workdir=tmp_path,
            instance=instance,
            extra=["--num-standby-replicas", "1", "--http-token", TOKEN],
        )
    # Each record's value is its event time; every key's minutes interleaved, in time order.
    records = [
        (f"k{i}", str(T0 + m * MINUTE + j * 1000).encode())
        for m in range(4)
        for j in range(3)
        for i in range(len(KEYS))
        if j < count(i, m)
    ]
    assert sum(EXPECTED.values()) == len(records)
    # Keyed like Kafka's Java producer, which the query API's routing assumes.
    produce(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], records, partitioner="murmur2_random")
    for worker in started.values():  # both run the two-member assignment (not warming up)
        worker.wait_for_log(r"members \[w0, w1\]; active tasks", 120)
    urls = {instance: worker.url() for instance, worker in started.items()}
    clients = {i: QueryClient(url, token=TOKEN, timeout=30) for i, url in urls.items()}

    def every_window() -> dict[tuple[str, int], int] | None:
        try:
            return counted(list(clients["w0"].all_windows(STORE, page_size=7)))
        except QueryError:
            return None  # no owner yet (503)

    wait_until(lambda: every_window() == EXPECTED, 120, "every window counted")
    stores = {s["name"]: s["kind"] for s in clients["w1"].stores()}
    assert stores == {STORE: "window", "sessions": "session"}

    # The fan-out from each worker, paged, and a time range: windows starting in it.
    for client in clients.values():
        in_range = list(client.all_windows(STORE, from_ms=T0 + MINUTE, to_ms=T0 + 2 * MINUTE))
        assert counted(in_range) == {
            k: n for k, n in EXPECTED.items() if T0 + MINUTE <= k[1] <= T0 + 2 * MINUTE
        }
        assert all(w["end_ms"] == w["start_ms"] + MINUTE for w in in_range)
    # Sessions: each key's records of one minute (1 to 3, a second apart) are one session;
    # a range selects the sessions overlapping it.
    sessions = list(clients["w1"].all_windows("sessions", from_ms=T0 + MINUTE + 1500))
    assert {(w["key"], w["start_ms"], w["end_ms"]): int(w["value"]) for w in sessions} == {
        (k, start, start + (n - 1) * 1000): n
        for (k, start), n in EXPECTED.items()
        if start + (n - 1) * 1000 >= T0 + MINUTE + 1500
    }
    headers = {"authorization": f"Bearer {TOKEN}"}
    page = httpx.get(f"{urls['w1']}/v1/stores/{STORE}/windows", headers=headers).json()
    assert {t["answered_by"] for t in page["tasks"].values()} == {"w0", "w1"}

    # One key, from the worker that does not own it: forwarded to the owner.
    key = KEYS[7]
    where = clients["w0"].key_metadata(STORE, key)
    owner = where["active"]
    other = next(i for i in urls if i != owner)
    answer = httpx.get(f"{urls[other]}/v1/stores/{STORE}/windows/{key}", headers=headers).json()
    assert answer["answered_by"] == owner and answer["role"] == "active"
    assert counted(answer["windows"]) == {k: n for k, n in EXPECTED.items() if k[0] == key}
    assert counted(clients[other].windows(STORE, key, from_ms=T0 + 3 * MINUTE)) == {
        (key, T0 + 3 * MINUTE): count(7, 3)
    }
    refused = httpx.get(f"{urls[other]}/v1/stores/{STORE}/windows/{key}")
    assert refused.status_code == 401

    # The other worker's standby copy, read where it is.
    def standby_answer() -> dict[str, Any]:
        response = httpx.get(
            f"{urls[other]}/v1/stores/{STORE}/windows/{key}",
            params={"stale": "true", "prefer_local": "true"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    wait_until(
        lambda: counted(standby_answer()["windows"]) == counted(answer["windows"]),
        60,
        "the standby to catch up",
    )
    assert (standby_answer()["answered_by"], standby_answer()["role"]) == (other, "standby")

    # The owner killed: at once, before the group notices, a stale read is the standby's and a
    # plain one is refused, saying how to get the standby's.
    started[owner].kill()
    stale = clients[other].windows(STORE, key, stale=True)
    assert counted(stale) == counted(answer["windows"])
    with pytest.raises(QueryError) as unavailable:
        clients[other].windows(STORE, key)
    assert unavailable.value.status == 503 and "stale=true" in str(unavailable.value)
    for client in clients.values():
        client.close()
