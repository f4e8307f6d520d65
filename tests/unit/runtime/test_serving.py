"""`processor.runtime.serving`: the worker's HTTP server takes its port at once (a port in use
stops the worker there, with the setting named) and is built and started on a thread of its own;
requests made meanwhile wait and are answered once it serves."""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from processor import Topology, serdes
from processor.config import WorkerConfig
from processor.errors import ConfigError
from processor.metrics import WorkerMetrics
from processor.runtime import query_app
from processor.runtime.assembly import WorkerParts
from processor.runtime.background import BackgroundStartError
from processor.runtime.serving import QueryService
from processor.topology.handling import Accounting, ErrorHandling

WAIT_S = 20.0


def _parts(port: int = 0) -> WorkerParts:
    topology = Topology("serving")
    topology.stream("in", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()).to(
        "out"
    )
    config = WorkerConfig(bootstrap_servers="127.0.0.1:9", application_id="app", http_port=port)
    return WorkerParts(
        topology=topology,
        config=config,
        instance_id="w1",
        subtopologies={s.id: s for s in topology.subtopologies("app")},
        handling=ErrorHandling(),
        accounting=Accounting(),
        metrics=WorkerMetrics(),
    )


# What the app reads of the worker: the task count per sub-topology, and the runtime view
# (beyond its instance id, only read by store queries, which these tests do not make).
PLAN: Any = SimpleNamespace(task_count=lambda subtopology: 6)
VIEW: Any = SimpleNamespace(instance_id="w1")


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        return response.status, response.read().decode()


@pytest.fixture
def service() -> Iterator[QueryService]:
    started = QueryService(_parts())
    try:
        yield started
    finally:
        started.close()


def test_a_port_in_use_stops_the_worker_at_once_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as raised:
            QueryService(_parts(port))
    assert raised.value.setting == "http_port"
    assert f"cannot serve HTTP on 127.0.0.1:{port}" in str(raised.value)
    assert "choose another port" in str(raised.value)


def test_the_endpoint_is_known_before_the_server_is_built(service: QueryService) -> None:
    assert service.port > 0
    assert service.endpoint == f"http://127.0.0.1:{service.port}"
    assert service.wait(0.05) is None  # nothing served before the worker hands over its view


def test_a_request_made_before_the_server_runs_is_answered_once_it_does(
    service: QueryService, caplog: pytest.LogCaptureFixture
) -> None:
    answers: list[tuple[int, str]] = []
    early = threading.Thread(
        target=lambda: answers.append(_get(f"http://127.0.0.1:{service.port}/metrics"))
    )
    with caplog.at_level(logging.INFO, logger="processor.worker"):
        early.start()
        service.serve(PLAN, VIEW)
        early.join(WAIT_S)
        assert service.wait(WAIT_S) is not None
    status, text = answers[0]
    assert status == 200 and "processor_" in text  # the worker's metrics
    serving = [r.getMessage() for r in caplog.records if "serving the query API" in r.getMessage()]
    assert serving == [
        f"worker w1: serving the query API and /metrics on http://127.0.0.1:{service.port} "
        f"(endpoint {service.endpoint})"
    ]


def test_closed_before_serving_it_never_serves_and_frees_the_port() -> None:
    service = QueryService(_parts())
    port = service.port
    service.close()
    assert service.wait(WAIT_S) is None
    with socket.socket() as again:  # the port can be taken again: nothing holds it
        again.bind(("127.0.0.1", port))
    service.raise_if_failed()  # closing is no failure


def test_a_server_that_fails_to_build_is_raised_on_the_workers_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("the app could not be built")

    monkeypatch.setattr(query_app, "start_server", broken)
    service = QueryService(_parts())
    try:
        service.serve(PLAN, VIEW)
        service.wait(WAIT_S)
        with pytest.raises(BackgroundStartError) as raised:
            service.raise_if_failed()
        assert str(raised.value).startswith(
            "the query API and /metrics failed to start: RuntimeError: the app could not be built"
        )
    finally:
        service.close()
