"""A failover scenario on a real broker, shared by the standby tests and `bench/failover.py`.

Three workers count records per key (`tests.worker_topologies:keyed_counting`) under
exactly-once, over a store of `keys` keys on 6 partitions. Once every key is counted, more
records flow in and one worker is killed with SIGKILL mid-stream. The scenario records, from the
survivors' logs, when each task processed again and how many changelog records its start read,
and which tasks each survivor held as standby before the kill; then it checks every count.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.workers import WorkerProcess

_ASSIGNMENT = re.compile(
    r"members \[([^\]]*)\]; active tasks \[([^\]]*)\]; standby tasks \[([^\]]*)\]"
)
_STARTED = re.compile(
    r"task (\d+_\d+): state restored in [\d.]+s \((\d+) changelog records read\), processing"
)


def _tasks(listing: str) -> set[str]:
    return set(filter(None, listing.split(", ")))


@dataclass
class Held:
    """One instance's accepted assignment, from its log."""

    members: set[str]
    active: set[str]
    standby: set[str]


def last_assignment(worker: WorkerProcess, after: int = 0) -> Held | None:
    found = list(_ASSIGNMENT.finditer(worker.log(), after))
    if not found:
        return None
    members, active, standby = found[-1].groups()
    return Held(_tasks(members), _tasks(active), _tasks(standby))


def metrics(worker: WorkerProcess) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The worker's /metrics: sample name -> labels -> value."""
    with urllib.request.urlopen(f"{worker.url()}/metrics", timeout=5) as response:
        text = response.read().decode()
    result: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return result


def standby_lags(worker: WorkerProcess) -> dict[str, float]:
    return {
        dict(labels)["task"]: value
        for labels, value in metrics(worker).get("processor_standby_lag_records", {}).items()
    }


class KeyedLoad:
    """Produces `count` records of keys `k0..k{keys-1}` (value "1") at about `rate` records
    per second on a thread, remembering how many of each key it produced."""

    def __init__(self, bootstrap: str, topic: str, keys: list[str], rate: float) -> None:
        self.produced: Counter[str] = Counter()
        self._bootstrap, self._topic, self._keys, self._rate = bootstrap, topic, keys, rate
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish"
        assert not self.errors, self.errors

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self._bootstrap, "acks": "all", "linger.ms": 5})

        def delivered(error: object, message: object) -> None:
            if error is not None:
                self.errors.append(str(error))

        started = time.monotonic()
        for i, key in enumerate(self._keys):
            ahead = i / self._rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            while True:
                try:
                    producer.produce(self._topic, key=key, value=b"1", on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            self.produced[key] += 1
            producer.poll(0)
        if producer.flush(60):
            self.errors.append("records left unacknowledged")


def produce_keys(bootstrap: str, topic: str, keys: int) -> Counter[str]:
    """One record per key `k0..k{keys-1}`, as fast as the broker takes them."""
    load = KeyedLoad(bootstrap, topic, [f"k{i}" for i in range(keys)], rate=float("inf"))
    load._run()
    assert not load.errors, load.errors
    return load.produced


@dataclass
class FailoverResult:
    victim: str
    victim_tasks: set[str]
    before: dict[str, Held]  # survivors' assignments before the kill
    after: dict[str, Held]
    resumed_after_s: dict[str, float]  # task -> seconds from SIGKILL to processing again
    read_on_start: dict[str, int]  # task -> changelog records read before it processed again
    moved: dict[str, str] = field(default_factory=dict)  # task -> new owner
    log_offsets: dict[str, int] = field(default_factory=dict)  # survivors' logs at the kill

    @property
    def replayed(self) -> int:
        return sum(self.read_on_start[t] for t in self.moved)


def kill_and_watch(
    workers: dict[str, WorkerProcess], victim: str, timeout: float
) -> FailoverResult:
    """SIGKILL `victim`; wait until the survivors have taken the new assignment and every task
    that moved processes again. A task a survivor keeps never stops: it must not start again."""
    survivors = {i: w for i, w in workers.items() if i != victim}
    before = {i: last_assignment(w) for i, w in workers.items()}
    assert all(before.values()), "every worker has an assignment before the kill"
    offsets = {i: len(w.log()) for i, w in survivors.items()}
    victim_tasks = before[victim].active  # type: ignore[union-attr]
    workers[victim].kill()
    killed_at = time.monotonic()
    resumed: dict[str, float] = {}
    read: dict[str, int] = {}
    after: dict[str, Held] = {}
    moved: dict[str, str] = {}
    deadline = killed_at + timeout
    while len(after) < len(survivors) or len(resumed) < len(moved):
        assert time.monotonic() < deadline, (
            f"after the kill: new assignment on {sorted(after)}, moved {moved}, tasks processing "
            f"again {sorted(resumed)}"
        )
        now = time.monotonic() - killed_at
        for instance, worker in survivors.items():
            held = last_assignment(worker, offsets[instance])
            if held is None or victim in held.members:
                continue
            after[instance] = held
            kept = before[instance].active  # type: ignore[union-attr]
            moved.update({task: instance for task in held.active - kept})
            for match in _STARTED.finditer(worker.log(), offsets[instance]):
                task = match.group(1)
                assert task not in kept, f"{instance} restarted task {task}, which it kept"
                if task in held.active and task not in resumed:
                    resumed[task] = now
                    read[task] = int(match.group(2))
        time.sleep(0.05)
    survivors_before = {i: h for i, h in before.items() if i != victim and h is not None}
    return FailoverResult(
        victim, victim_tasks, survivors_before, after, resumed, read, moved, offsets
    )
