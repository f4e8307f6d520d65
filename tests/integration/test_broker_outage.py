"""A broker outage mid-stream: the broker is killed with SIGKILL while two workers count records
per key, stays down longer than the consumers' session timeout, and is restarted on the same data
directory and ports. The workers wait, retry and carry on in the same processes: exactly-once
counts are exact, at-least-once loses nothing.

Each test runs its own broker (it kills it), not the session's.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from processor.testing.broker import LocalBroker
from tests.integration.failover import last_assignment, metrics
from tests.integration.test_state_faults import Latest, count_of
from tests.integration.workers import PARTITIONS, SESSION_TIMEOUT_S, WorkerProcess, start_worker
from tests.kafka_helpers import create_topic

pytestmark = pytest.mark.integration

RECORDS = 20_000
KEYS = 500
LOAD_SECONDS = 24.0  # the records go in at a steady pace over this long
KILL_AFTER_S = 5.0  # into the load
DOWNTIME_S = SESSION_TIMEOUT_S + 2.0  # every consumer's session times out meanwhile


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalBroker]:
    with LocalBroker(data_dir=tmp_path / "broker") as own:
        yield own


class SteadyLoad:
    """Produces `values` (as keys, value "1") evenly over `seconds` on a thread, with an
    idempotent producer that waits out a broker outage instead of failing records."""

    def __init__(self, bootstrap: str, topic: str, values: list[str], seconds: float) -> None:
        self.produced = 0
        self.errors: list[str] = []
        self._bootstrap, self._topic, self._values, self._seconds = (
            bootstrap,
            topic,
            values,
            seconds,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish"
        assert not self.errors, self.errors[:5]

    def _run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self._bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 180_000,
                "partitioner": "murmur2_random",
            }
        )

        def delivered(error: object, message: object) -> None:
            if error is not None:
                self.errors.append(str(error))

        rate = len(self._values) / self._seconds
        started = time.monotonic()
        for i, key in enumerate(self._values):
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
            while True:
                try:
                    producer.produce(self._topic, key=key, value=b"1", on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            self.produced += 1
            producer.poll(0)
        if producer.flush(120):
            self.errors.append("records left unacknowledged")


def run_outage(
    broker: LocalBroker, tmp_path: Path, unique_name: str, guarantee: str
) -> tuple[Counter[str], Latest, list[WorkerProcess]]:
    """Two workers count; the broker is SIGKILLed mid-stream, kept down for `DOWNTIME_S` and
    restarted while the load goes on. Returns the truth, the output read until it is complete
    (or a deadline) and the workers."""
    bootstrap = broker.bootstrap_servers
    source, sink = f"{unique_name}-in", f"{unique_name}-out"
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    env = {
        "TEST_SOURCE_TOPIC": source,
        "TEST_SINK_TOPIC": sink,
        "PROCESSOR_APPLICATION_ID": unique_name,
    }
    workers = [
        start_worker(
            "tests.worker_topologies:keyed_counting",
            bootstrap=bootstrap,
            env=env,
            workdir=tmp_path,
            instance=instance,
            extra=["--processing-guarantee", guarantee],
        )
        for instance in ("w0", "w1")
    ]
    output: Latest | None = None
    try:
        deadline = time.monotonic() + 60
        while not all(
            (held := last_assignment(w)) is not None and len(held.members) == 2 for w in workers
        ):
            assert time.monotonic() < deadline, [w.log()[-2000:] for w in workers]
            for w in workers:
                assert w.process.poll() is None, w.log()[-3000:]
            time.sleep(0.1)

        rng = random.Random(guarantee)
        values = [f"k{rng.randrange(KEYS)}" for _ in range(RECORDS)]
        truth = Counter(values)
        load = SteadyLoad(bootstrap, source, values, LOAD_SECONDS)
        output = Latest(bootstrap, sink, decode=count_of, tolerate_client_errors=True)
        load.start()
        began = time.monotonic()
        while time.monotonic() - began < KILL_AFTER_S:
            output.poll()
        assert output.total > 0, "the workers count before the outage"
        before = output.total
        broker.kill()
        killed = time.monotonic()
        print(f"SIGKILL broker at {load.produced} produced, {before} counted")
        time.sleep(DOWNTIME_S)
        broker.restart()
        print(
            f"broker back after {time.monotonic() - killed:.1f}s "
            f"(restart {broker.startup_seconds:.1f}s)"
        )
        load.join(150)
        print(f"load done {time.monotonic() - began:.1f}s after it began")

        def complete() -> bool:
            if len(output.latest) < len(truth):
                return False
            if guarantee == "exactly_once":
                return output.latest == truth
            return all(output.latest.get(k, 0) >= n for k, n in truth.items())

        deadline = time.monotonic() + 60
        while not complete() and time.monotonic() < deadline:
            output.poll()
        print(
            f"counted {output.total} updates, {time.monotonic() - began:.1f}s after the load began"
        )
        output.poll(1.0)
        for w in workers:
            assert w.process.poll() is None, f"worker {w.instance_id} exited:\n{w.log()[-5000:]}"
        return truth, output, workers
    except BaseException:
        for w in workers:
            w.stop_quietly()
            print(f"--- {w.instance_id}'s log, without librdkafka's connection errors ---")
            print("".join(line for line in w.log().splitlines(True) if "|FAIL|" not in line))
        raise
    finally:
        if output is not None:
            output.close()


def check_outage_was_seen(workers: list[WorkerProcess]) -> None:
    """Each worker said for how long the broker was away (a request that failed, or a commit
    that waited for it) and, where requests failed, when it was back, in its log and in its
    metrics; and it is still the same process."""
    errors = 0.0
    for worker in workers:
        log = worker.log()
        assert len(re.findall(r"worker \S+: application ", log)) == 1, "the worker started once"
        assert re.search(r"WARNING .*broker unreachable (or stalled )?for", log), log[-5000:]
        samples = metrics(worker)
        assert samples["processor_broker_reachable"][()] == 1.0
        failed = sum(samples["processor_broker_errors_total"].values())
        if failed:
            assert re.search(r"INFO .*broker reachable again after [\d.]+s", log), log[-5000:]
        errors += failed
    assert errors > 0, "requests failed while the broker was away"


def stop(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        worker.stop_quietly()


def test_exactly_once_counts_are_exact_across_a_broker_outage(
    broker: LocalBroker, tmp_path: Path, unique_name: str
) -> None:
    workers: list[WorkerProcess] = []
    try:
        truth, output, workers = run_outage(broker, tmp_path, unique_name, "exactly_once")
        duplicated = {pair: n for pair, n in output.pairs.items() if n > 1}
        assert not duplicated, (
            f"{len(duplicated)} updates duplicated, e.g. {next(iter(duplicated))}"
        )
        missing = {
            k: (output.latest.get(k), n) for k, n in truth.items() if output.latest.get(k) != n
        }
        assert not missing, (
            f"{len(missing)} keys off (counted, true), e.g. {list(missing.items())[:5]}"
        )
        assert output.total == RECORDS, "one update per input record, each exactly once"
        check_outage_was_seen(workers)
    finally:
        stop(workers)


def test_at_least_once_loses_nothing_across_a_broker_outage(
    broker: LocalBroker, tmp_path: Path, unique_name: str
) -> None:
    workers: list[WorkerProcess] = []
    try:
        truth, output, workers = run_outage(broker, tmp_path, unique_name, "at_least_once")
        short = {
            k: (output.latest.get(k, 0), n) for k, n in truth.items() if output.latest.get(k, 0) < n
        }
        assert not short, (
            f"{len(short)} keys undercounted (counted, true), e.g. {list(short.items())[:5]}"
        )
        assert output.total >= RECORDS
        check_outage_was_seen(workers)
    finally:
        stop(workers)
