"""The query API cannot be turned into an amplifier: with one owner hung (SIGSTOP) and the others
under a storm of heavy queries (batches of thousands of keys, keys of the hung owner, whole-store
pages, batches over the key cap), the other workers keep answering `/metrics` and the store
listing within a second, and every request over a bound is refused quickly with 413, or 503 and
a `Retry-After`, instead of hanging. The storm and the probes run in processes of their own
(`tests.integration.query_storm`)."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processor.query.partitioner import partition_for
from tests.integration.query_storm import Answer, Probe
from tests.integration.workers import PARTITIONS, REPO, WorkerProcess, start_worker
from tests.kafka_helpers import produce

TOPOLOGY = "tests.worker_topologies:keyed_counting"
STORE = "counts"
KEYS = 20_000
LOAD_SECONDS = 9.0
# Concurrent clients: more per worker (48) than the threads its HTTP server runs handlers on (40).
LOAD_THREADS = 96
# A load request answered later than this counts as hung: the server's request deadline (5 s
# by default) and slack for two busy cores (before, one forward alone waited 10 s).
HUNG_S = 10.0
# The store listing and /metrics must answer within this, every time, throughout.
PROBE_BUDGET_S = 1.0
PROBE_INTERVAL_S = 0.2


@pytest.fixture
def started(tmp_path: Path) -> Iterator[dict[str, WorkerProcess]]:
    workers: dict[str, WorkerProcess] = {}
    yield workers
    for worker in workers.values():
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGCONT)
        worker.stop_quietly()


def _post_keys(keys: list[str], *, stale: bool = False) -> str:
    return json.dumps({"keys": keys, "stale": stale})


def _helper(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.query_storm", *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_hung_owner_and_a_query_storm_do_not_stall_the_other_workers(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, started: dict[str, WorkerProcess]
) -> None:
    for instance in ("w0", "w1", "w2"):
        started[instance] = start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env=topics,
            workdir=tmp_path,
            instance=instance,
            extra=["--num-standby-replicas", "1"],
        )
    for worker in started.values():  # a late one warms up before it joins
        worker.wait_for_log(r"members \[w0, w1, w2\]; active tasks", 90)
    names = [f"k{i}" for i in range(KEYS)]
    produce(
        kafka_bootstrap,
        topics["TEST_SOURCE_TOPIC"],
        [(k, b"x") for k in names],
        partitioner="murmur2_random",
    )
    urls = {instance: worker.url() for instance, worker in started.items()}
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "every key counted within 60 s"
        response = httpx.post(
            f"{urls['w0']}/v1/stores/{STORE}/keys", json={"keys": names[::50]}, timeout=30
        )
        if response.status_code == 200 and all(r["found"] for r in response.json()["results"]):
            break
        time.sleep(0.3)

    victim = "w1"
    subtopology = httpx.get(f"{urls['w0']}/v1/metadata/stores/{STORE}/keys/k0").json()["task"]
    subtopology = subtopology.split("_")[0]
    held = httpx.get(f"{urls['w0']}/v1/metadata").json()["instances"][victim]["active_tasks"]
    victim_keys = [
        k for k in names if f"{subtopology}_{partition_for(k.encode(), PARTITIONS)}" in held
    ]
    assert len(victim_keys) > 1000, f"the victim holds {held}"
    others = sorted(set(names) - set(victim_keys))

    kinds: list[tuple[str, str, str, str | None]] = [
        ("batch", "POST", f"/v1/stores/{STORE}/keys", _post_keys(names[:5000])),
        ("healthy-batch", "POST", f"/v1/stores/{STORE}/keys", _post_keys(others[:5000])),
        ("victim-batch", "POST", f"/v1/stores/{STORE}/keys", _post_keys(victim_keys[:2000])),
        ("victim-get", "GET", f"/v1/stores/{STORE}/keys/{victim_keys[7]}", None),
        ("entries", "GET", f"/v1/stores/{STORE}/entries?limit=5000", None),
        (
            "stale-batch",
            "POST",
            f"/v1/stores/{STORE}/keys",
            _post_keys(victim_keys[:2000], stale=True),
        ),
        ("too-many", "POST", f"/v1/stores/{STORE}/keys", _post_keys(names[:10_001])),
    ]
    survivors = [urls["w0"], urls["w2"]]
    plan: dict[str, Any] = {
        "urls": survivors,
        "kinds": kinds,
        "threads": LOAD_THREADS,
        "seconds": LOAD_SECONDS,
        "timeout": HUNG_S + 5,
    }
    probing = _helper("probe", json.dumps(survivors), str(PROBE_INTERVAL_S))
    storm: subprocess.Popen[str] | None = None
    try:
        assert probing.stdout is not None and probing.stdout.readline() == "ready\n"
        started[victim].process.send_signal(signal.SIGSTOP)
        storm = _helper("load")
        outcome = json.loads(storm.communicate(json.dumps(plan), timeout=LOAD_SECONDS + 60)[0])
        started[victim].process.send_signal(signal.SIGCONT)
        probes = [Probe(*p) for p in json.loads(probing.communicate("over\n", timeout=30)[0])]
    finally:
        for helper in (probing, storm):
            if helper is not None and helper.poll() is None:
                helper.kill()
                helper.wait(10)
    answers = [Answer(*a) for a in outcome["answers"]]
    waiting: int = outcome["waiting"]

    took = [p.seconds for p in probes]
    print(
        f"\n{len(answers)} load requests in {LOAD_SECONDS:g} s from {LOAD_THREADS} clients; "
        f"{len(probes)} probes: median {statistics.median(took) * 1000:.0f} ms, "
        f"max {max(took) * 1000:.0f} ms"
    )
    print(
        "(kind, status): count", dict(sorted(Counter((a.kind, a.status) for a in answers).items()))
    )
    print(
        "(status, limit): count",
        dict(
            sorted(Counter((a.status, a.limit or "-") for a in answers if a.status != 200).items())
        ),
    )
    for status in (200, 503):
        times = sorted(a.seconds for a in answers if a.status == status)
        if times:
            print(
                f"{status}: median {statistics.median(times) * 1000:.0f} ms, "
                f"p99 {times[int(len(times) * 0.99)] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms"
            )
    for path in ("/metrics", "/v1/stores"):
        times = sorted(p.seconds for p in probes if p.url.endswith(path))
        median, worst = statistics.median(times) * 1000, times[-1] * 1000
        print(f"{path}: median {median:.0f} ms, max {worst:.0f} ms")
    back = [a.at for a in answers if a.kind == "victim-get" and a.status == 200]
    print(f"the hung owner's keys answered again from {min(back, default=-1):.1f} s on")

    for worker in started.values():
        closed_under = worker.log().count("closing task state while")
        print(f"{worker.instance_id}: closed task state under {closed_under} reads")

    assert waiting == 0, f"{waiting} load threads still wait for an answer"
    slow = [p for p in probes if p.status != 200 or p.seconds > PROBE_BUDGET_S]
    assert not slow, f"the store listing or /metrics was slow or failed: {slow[:10]}"
    hung = [a for a in answers if a.status == -1 or a.seconds > HUNG_S]
    assert not hung, f"{len(hung)} requests hung or failed, e.g. {hung[:3]}"
    unexpected = [a for a in answers if a.status not in (200, 413, 429, 503)]
    assert not unexpected, f"unexpected answers, e.g. {unexpected[:3]}"
    refused = [a for a in answers if a.status in (429, 503)]
    assert refused, "some requests were over a bound (the hung owner's keys, at least)"
    no_retry_after = [a for a in refused if a.retry_after is None or int(a.retry_after) < 1]
    assert not no_retry_after, f"every 429/503 says when to retry: {no_retry_after[:3]}"
    unexplained = [a for a in refused if not a.detail or a.detail.startswith("(no JSON")]
    assert not unexplained, f"every 429/503 says why in JSON: {unexplained[:3]}"
    too_many = [a for a in answers if a.kind == "too-many"]
    assert too_many and all(a.status in (413, 503) for a in too_many), too_many[:3]
    assert any(a.status == 413 and "10000" in a.detail for a in too_many), too_many[:3]
    healthy = [a for a in answers if a.kind == "healthy-batch"]
    assert any(a.status == 200 for a in healthy), f"live owners' keys still answered: {healthy[:3]}"
