"""Finding a worker's endpoint from the statuses on the metadata topic, without a broker: the
running instances most recently updated first, reading on until the topic goes quiet, and an
error naming every instance seen when none runs (the broker steps: test_query_fuzz)."""

from __future__ import annotations

import time

from processor.kafka.topic_tail import TailRecord
from processor.query.discovery import no_running_instance, read_statuses, running_endpoints
from processor.status.record import InstancePhase, InstanceStatus, StatusBoard


def record(instance: str, phase: InstancePhase, endpoint: str | None, age_ms: int) -> TailRecord:
    status = InstanceStatus(
        instance, phase, endpoint=endpoint, updated_ms=int(time.time() * 1000) - age_ms
    )
    return TailRecord(instance.encode(), status.to_json(), (), "app-metadata", 0, 0)


class Tail:
    """Hands out `batches` one poll at a time, then nothing (after waiting `timeout`, as a
    real tail does)."""

    def __init__(self, *batches: list[TailRecord]) -> None:
        self.batches = list(batches)
        self.polls = 0

    def poll(self, max_records: int = 500, timeout: float = 0.0) -> list[TailRecord]:
        self.polls += 1
        if self.batches:
            return self.batches.pop(0)
        time.sleep(timeout)
        return []


def test_running_instances_with_an_endpoint_most_recently_updated_first() -> None:
    board = StatusBoard()
    for r in (
        record("old", InstancePhase.RUNNING, "http://old:1", 5_000),
        record("new", InstancePhase.RUNNING, "http://new:1", 1_000),
        record("gone", InstancePhase.STOPPED, "http://gone:1", 0),
        record("warm", InstancePhase.WARMING_UP, "http://warm:1", 0),
        record("mute", InstancePhase.RUNNING, None, 0),
    ):
        board.apply(r.key, r.value)
    assert running_endpoints(board) == ["http://new:1", "http://old:1"]


def test_reading_goes_on_until_the_topic_is_quiet_so_a_later_status_is_seen() -> None:
    board = StatusBoard()
    tail = Tail(
        [record("a", InstancePhase.RUNNING, "http://a:1", 0)],
        [record("a", InstancePhase.STOPPED, "http://a:1", 0)],
    )
    read_statuses(tail, board, wait=0.5)
    assert tail.polls > 2
    assert board.statuses["a"].phase is InstancePhase.STOPPED
    assert running_endpoints(board) == []


def test_reading_stops_at_the_first_quiet_poll_once_one_runs() -> None:
    board = StatusBoard()
    tail = Tail([record("a", InstancePhase.RUNNING, "http://a:1", 0)])
    started = time.monotonic()
    read_statuses(tail, board, wait=30)
    assert tail.polls == 2 and time.monotonic() - started < 5
    assert running_endpoints(board) == ["http://a:1"]


def test_when_none_runs_the_error_names_every_instance_seen() -> None:
    board = StatusBoard()
    stopped = record("gone", InstancePhase.STOPPED, "http://gone:1", 0)
    board.apply(stopped.key, stopped.value)
    error = no_running_instance(board, "broker:9092", "app", 2)
    assert error.url == "broker:9092"
    assert str(error) == (
        "no running instance of application 'app' has published a query endpoint on topic "
        "'app-metadata' (read for 2s; instances: gone (stopped, endpoint http://gone:1)); "
        "start a worker with an --http-port, or pass a worker's URL"
    )
