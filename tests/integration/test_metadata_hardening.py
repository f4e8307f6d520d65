"""Bad records on `<app>-metadata` (issue 13 §1): a status that does not validate, a value nested
100,000 deep, a joiner claim dated in the future, a status forged without the token's signature
naming an endpoint of ours. Two running workers ignore them and keep processing and answering
queries, count them on `/metrics`, and a worker restarted afterwards (which reads them all again
from the topic's beginning) starts fine. The forged endpoint never receives the token."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from processor.query.client import QueryClient, QueryError
from processor.status.record import InstancePhase, InstanceStatus
from processor.status.signing import SIGNATURE_HEADER, StatusSigner
from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import produce

TOPOLOGY = "tests.worker_topologies:keyed_counting"
STORE = "counts"
TOKEN = "metadata-secret"
KEYS = [f"k{i}" for i in range(30)]
MEMBERS = r"members \[w0, w1\]; active tasks"


class _Trap:
    """An HTTP endpoint that records the Authorization header of every request it gets."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        seen = self.authorizations

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                seen.append(self.headers.get("authorization", ""))
                self.send_response(500)
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop_quietly()


def _count_all(bootstrap: str, source: str) -> None:
    """One more record for every key, partitioned with murmur2 as the query API routes keys."""
    produce(bootstrap, source, [(k, "x") for k in KEYS], partitioner="murmur2_random")


def _wait_for_counts(client: QueryClient, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    counts: dict[str, str] | QueryError = {}
    while time.monotonic() < deadline:
        try:
            counts = client.get_many(STORE, KEYS)
        except QueryError as e:  # a task still restoring after a rebalance: 503
            counts = e
        if counts == dict.fromkeys(KEYS, str(expected)):
            return
        time.sleep(0.2)
    raise AssertionError(f"counts not all {expected} after {timeout}s: {counts}")


def _produce_signed(
    bootstrap: str, topic: str, signer: StatusSigner | None, records: list[tuple[bytes, bytes]]
) -> None:
    """Records as a worker with the token (a `signer`), or anyone else, would write them."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        headers = [(SIGNATURE_HEADER, signer.sign(key, value))] if signer is not None else None
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def _status(
    instance: str, phase: InstancePhase, *, endpoint: str | None = None, ahead_ms: int = 0
) -> bytes:
    now_ms = int(time.time() * 1000)
    return InstanceStatus(
        instance, phase, endpoint=endpoint, updated_ms=now_ms + ahead_ms
    ).to_json()


def test_bad_metadata_records_are_ignored_counted_and_survive_a_restart(
    kafka_bootstrap: str, topics: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    source = topics["TEST_SOURCE_TOPIC"]
    metadata_topic = f"{topics['PROCESSOR_APPLICATION_ID']}-metadata"

    def start(instance: str) -> WorkerProcess:
        worker = start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env=topics,
            workdir=tmp_path,
            instance=instance,
            extra=["--http-token", TOKEN],
        )
        workers.append(worker)
        return worker

    w0 = start("w0")
    w0.wait_for_log(r"members \[w0\]; active tasks", 30)
    w1 = start("w1")
    for worker in (w0, w1):
        worker.wait_for_log(MEMBERS, 30)
    client = QueryClient(w0.url(), token=TOKEN, timeout=5)
    _count_all(kafka_bootstrap, source)
    _wait_for_counts(client, 1, 20)

    trap = _Trap()
    depth = 100_000
    # Signed, as by a worker of another version: only validation stands in their way.
    signed_but_invalid = [
        (b"ghost", json.dumps({"instance_id": "ghost", "lags": None}).encode()),
        (b"deep", b"[" * depth + b"]" * depth),
        (b"joiner", _status("joiner", InstancePhase.WARMING_UP, ahead_ms=86_400_000)),
        (b"ghost", json.dumps({"instance_id": "ghost", "lags": None}).encode()),
    ]
    # Valid and signed, but not a member: never sent a forwarded query.
    non_member = [(b"evil", _status("evil", InstancePhase.RUNNING, endpoint=trap.url))]
    # Under a member's instance id, unsigned: would redirect its queries (and the token).
    forged = [(b"w1", _status("w1", InstancePhase.RUNNING, endpoint=trap.url))]
    signer = StatusSigner(TOKEN, topics["PROCESSOR_APPLICATION_ID"])
    try:
        _produce_signed(kafka_bootstrap, metadata_topic, signer, signed_but_invalid + non_member)
        _produce_signed(kafka_bootstrap, metadata_topic, None, forged)
        for worker in (w0, w1):
            for key, reason in (
                ("ghost", "invalid"),
                ("deep", "not_json"),
                ("joiner", "clock_ahead"),
                ("w1", "unsigned"),
            ):
                where = rf"{metadata_topic}\[0\]@\d+"
                worker.wait_for_log(
                    rf"WARNING .*ignored the status {key!r} on {where} \({reason}\): ", 10
                )
            assert "'evil'" not in worker.log()

        # Still processing, and every key answered (half of them forwarded to w1, not the trap).
        _count_all(kafka_bootstrap, source)
        _wait_for_counts(client, 2, 20)
        assert trap.authorizations == [], "the forged endpoint received queries"
        assert w0.process.poll() is None and w1.process.poll() is None
        metrics = httpx.get(
            f"{w0.url()}/metrics/", headers={"authorization": f"Bearer {TOKEN}"}
        ).text
        ignored = [
            line
            for line in metrics.splitlines()
            if line.startswith("processor_metadata_records_ignored_total{")
        ]
        counts = {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in ignored}
        assert counts["invalid"] == 2 and counts["not_json"] == 1, metrics
        assert counts["clock_ahead"] == 1 and counts["unsigned"] == 1, metrics
        # Logged once per instance id, however often it is read.
        assert w0.log().count("'ghost' on") == 1
        members = client.metadata()["instances"]
        assert sorted(members) == ["w0", "w1"]
        assert trap.url not in {m["endpoint"] for m in members.values()}

        # A restarted worker reads every bad record again from the topic's beginning.
        assert w1.terminate() == 0, w1.log()[-2000:]
        w1 = start("w1")
        w1.wait_for_log(MEMBERS, 30)
        w1.wait_for_log(rf"WARNING .*ignored the status 'ghost' on {metadata_topic}", 10)
        _count_all(kafka_bootstrap, source)
        _wait_for_counts(client, 3, 20)
        assert trap.authorizations == []
        assert w0.process.poll() is None
    finally:
        trap.close()
        client.close()
