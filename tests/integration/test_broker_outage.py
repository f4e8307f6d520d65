"""A broker outage mid-stream: the broker is killed with SIGKILL while two applications (two
workers each, one exactly-once, one at-least-once) count records per key of one source, stays
down longer than the consumers' session timeout, and is restarted on the same data directory and
ports. The workers wait, retry and carry on in the same processes: exactly-once counts are exact,
at-least-once loses nothing.

The test runs its own broker (it kills it), not the session's.
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

RECORDS = 16_000
KEYS = 500
LOAD_SECONDS = 20.0  # the records go in at a steady pace over this long
# Into the load: a few seconds of commits (every 200 ms) before the outage. The broker is back
# after KILL_AFTER_S + DOWNTIME_S + its restart (3-6 s), while the load goes on.
KILL_AFTER_S = 3.0
# ...or later, until both applications' outputs have been read (a busy machine, with another test
# file beside this one, was seen to show no committed exactly-once output within 3 s); while the
# load still runs, so that the outage falls in the middle of it.
KILL_BY_S = 8.0
DOWNTIME_S = SESSION_TIMEOUT_S + 2.0  # every consumer's session times out meanwhile
# The applications counting the load, by guarantee: the prefix of their ids and instance ids.
GUARANTEES = {"exactly_once": "e", "at_least_once": "a"}


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
    broker: LocalBroker, tmp_path: Path, unique_name: str
) -> tuple[Counter[str], dict[str, Latest], dict[str, list[WorkerProcess]]]:
    """Two applications count the records of one source, two workers each, one per guarantee
    in `GUARANTEES`; the broker is SIGKILLed mid-stream, kept down for `DOWNTIME_S` and
    restarted while the load goes on. Returns the truth and, per guarantee, the output read
    until it is complete (or a deadline) and the workers."""
    bootstrap = broker.bootstrap_servers
    source = f"{unique_name}-in"
    create_topic(bootstrap, source, PARTITIONS)
    workers: dict[str, list[WorkerProcess]] = {}
    sinks: dict[str, str] = {}
    for guarantee, prefix in GUARANTEES.items():
        app = f"{unique_name}-{prefix}"
        sinks[guarantee] = f"{app}-out"
        create_topic(bootstrap, sinks[guarantee], PARTITIONS)
        env = {
            "TEST_SOURCE_TOPIC": source,
            "TEST_SINK_TOPIC": sinks[guarantee],
            "PROCESSOR_APPLICATION_ID": app,
        }
        workers[guarantee] = [
            start_worker(
                "tests.worker_topologies:keyed_counting",
                bootstrap=bootstrap,
                env=env,
                workdir=tmp_path,
                instance=f"{prefix}{n}",
                extra=["--processing-guarantee", guarantee],
            )
            for n in range(2)
        ]
    everyone = [w for group in workers.values() for w in group]
    outputs: dict[str, Latest] = {}
    try:
        deadline = time.monotonic() + 60
        while not all(
            (held := last_assignment(w)) is not None and len(held.members) == 2 for w in everyone
        ):
            assert time.monotonic() < deadline, [w.log()[-2000:] for w in everyone]
            for w in everyone:
                assert w.process.poll() is None, w.log()[-3000:]
            time.sleep(0.1)

        rng = random.Random(3)
        values = [f"k{rng.randrange(KEYS)}" for _ in range(RECORDS)]
        truth = Counter(values)
        load = SteadyLoad(bootstrap, source, values, LOAD_SECONDS)
        for guarantee, sink in sinks.items():
            outputs[guarantee] = Latest(
                bootstrap, sink, decode=count_of, tolerate_client_errors=True
            )
        load.start()
        began = time.monotonic()
        while time.monotonic() - began < KILL_AFTER_S or (
            time.monotonic() - began < KILL_BY_S and not all(o.total for o in outputs.values())
        ):
            for output in outputs.values():
                output.poll()
        before = {g: output.total for g, output in outputs.items()}
        assert all(before.values()), f"the workers count before the outage: {before}"
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

        def complete(guarantee: str) -> bool:
            latest = outputs[guarantee].latest
            if len(latest) < len(truth):
                return False
            if guarantee == "exactly_once":
                return latest == truth
            return all(latest.get(k, 0) >= n for k, n in truth.items())

        deadline = time.monotonic() + 60
        complete_after: dict[str, str] = {}
        while len(complete_after) < len(outputs) and time.monotonic() < deadline:
            for guarantee, output in outputs.items():
                output.poll()
                if guarantee not in complete_after and complete(guarantee):
                    complete_after[guarantee] = f"{time.monotonic() - began:.1f}s"
        counted = {g: output.total for g, output in outputs.items()}
        print(f"counted {counted} updates, complete {complete_after} after the load began")
        for output in outputs.values():
            output.poll(1.0)
        for w in everyone:
            assert w.process.poll() is None, f"worker {w.instance_id} exited:\n{w.log()[-5000:]}"
        return truth, outputs, workers
    except BaseException:
        for w in everyone:
            w.stop_quietly()
            print(f"--- {w.instance_id}'s log, without librdkafka's connection errors ---")
            print("".join(line for line in w.log().splitlines(True) if "|FAIL|" not in line))
        raise
    finally:
        for output in outputs.values():
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


def test_through_a_broker_outage_exactly_once_counts_are_exact_and_at_least_once_loses_nothing(
    broker: LocalBroker, tmp_path: Path, unique_name: str
) -> None:
    # Both guarantees live through the same outage: the broker's start, the load and the
    # downtime are what take the time, so one run serves both.
    workers: dict[str, list[WorkerProcess]] = {}
    try:
        truth, outputs, workers = run_outage(broker, tmp_path, unique_name)

        exact = outputs["exactly_once"]
        duplicated = {pair: n for pair, n in exact.pairs.items() if n > 1}
        assert not duplicated, (
            f"exactly-once: {len(duplicated)} updates duplicated, e.g. {next(iter(duplicated))}"
        )
        missing = {
            k: (exact.latest.get(k), n) for k, n in truth.items() if exact.latest.get(k) != n
        }
        assert not missing, (
            f"exactly-once: {len(missing)} keys off (counted, true), "
            f"e.g. {list(missing.items())[:5]}"
        )
        assert exact.total == RECORDS, "one update per input record, each exactly once"

        least = outputs["at_least_once"]
        short = {
            k: (least.latest.get(k, 0), n) for k, n in truth.items() if least.latest.get(k, 0) < n
        }
        assert not short, (
            f"at-least-once: {len(short)} keys undercounted (counted, true), "
            f"e.g. {list(short.items())[:5]}"
        )
        assert least.total >= RECORDS

        for group in workers.values():
            check_outage_was_seen(group)
    finally:
        for group in workers.values():
            stop(group)
