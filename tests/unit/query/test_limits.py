"""The query API's bounds without a network: the deadline every forward of a request shares, the
gates that refuse instead of queueing, and what a refusal says."""

from __future__ import annotations

import json
import threading

import pytest

from processor.config import WorkerConfig
from processor.query.limits import (
    MAX_KEYS,
    RETRY_BUSY_S,
    Deadline,
    Gate,
    Overloaded,
    QueryLimits,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_deadline_counts_down_and_never_below_zero() -> None:
    clock = Clock()
    deadline = Deadline(5.0, clock=clock)
    assert deadline.remaining() == 5.0
    clock.now += 2
    assert deadline.remaining() == 3.0
    clock.now += 10
    assert deadline.remaining() == 0.0


def test_a_share_of_a_deadline_is_that_fraction_of_the_time_left() -> None:
    clock = Clock()
    deadline = Deadline(5.0, clock=clock)
    clock.now += 1
    owners = deadline.share(0.5)
    assert owners.remaining() == 2.0  # half of the 4 s left
    clock.now += 2
    assert owners.remaining() == 0.0
    assert deadline.remaining() == 2.0  # what the owners did not use is left for standbys


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_a_share_is_a_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        Deadline(1.0).share(fraction)


def test_a_gate_refuses_at_once_when_full_naming_its_setting() -> None:
    gate = Gate(2, setting="query_max_requests", what="reads")
    gate.enter()
    with gate.hold(), pytest.raises(Overloaded) as refused:
        gate.enter()
    error = refused.value
    assert (error.status, error.limit, error.retry_after_s) == (503, "query_max_requests", 1)
    assert "2 reads in progress (query_max_requests)" in error.detail
    gate.enter()  # hold() gave its slot back
    gate.leave()
    gate.leave()


def test_a_full_gate_never_waits() -> None:
    gate = Gate(1, setting="query_max_forwards", what="forwards")
    gate.enter()
    refused = threading.Event()

    def other() -> None:
        try:
            gate.enter()
        except Overloaded:
            refused.set()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(1.0)
    assert not thread.is_alive() and refused.is_set()


def test_a_refusal_is_json_with_retry_after() -> None:
    response = Overloaded(
        "too busy", limit="query_max_requests", retry_after_s=RETRY_BUSY_S
    ).response()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert json.loads(bytes(response.body)) == {
        "detail": "too busy",
        "limit": "query_max_requests",
        "retry_after_s": 1,
    }


def test_the_key_cap_is_a_413_without_retry_after() -> None:
    response = Overloaded("too many keys", limit="max_keys", status=413).response()
    assert response.status_code == 413
    assert "retry-after" not in response.headers
    assert json.loads(bytes(response.body))["limit"] == "max_keys"


def test_limits_default_to_the_worker_settings() -> None:
    config = WorkerConfig(bootstrap_servers="h:1", application_id="a")
    assert QueryLimits.from_config(config) == QueryLimits()
    assert QueryLimits() == QueryLimits(timeout_s=5.0, max_requests=8, max_forwards=4)
    assert MAX_KEYS == 10_000


def test_limits_from_settings() -> None:
    config = WorkerConfig(
        bootstrap_servers="h:1",
        application_id="a",
        query_timeout_ms=1500,
        query_max_requests=4,
        query_max_forwards=2,
    )
    assert QueryLimits.from_config(config) == QueryLimits(
        timeout_s=1.5, max_requests=4, max_forwards=2
    )


@pytest.mark.parametrize("kwargs", [{"timeout_s": 0.0}, {"max_requests": 0}, {"max_forwards": 0}])
def test_limits_are_positive(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        QueryLimits(**kwargs)  # type: ignore[arg-type]
