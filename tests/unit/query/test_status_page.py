"""The status page, its token form and cookie, and the health endpoints
(`processor.query.status_routes`, `processor.query.guard`), through FastAPI's TestClient."""

from __future__ import annotations

import socket
from collections.abc import Mapping

import pytest
from fastapi.testclient import TestClient

from processor.metrics import RestoreSample, WorkerMetrics, WorkerSnapshot
from processor.query.guard import COOKIE_NAME
from processor.query.server import QueryServer, build_app
from processor.query.status_routes import LIVE_WITHIN_S, StatusSource
from processor.status.view import KnownInstance
from tests.unit.test_metrics import NoStores

TOKEN = "s3cret"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _running(metrics: WorkerMetrics, instance: str = "w1") -> None:
    metrics.publish(
        WorkerSnapshot(
            instance=instance,
            state="running",
            processed={"0_0": 10, "0_1": 0},
            restores=(RestoreSample("0_1", standby=False, records=30, remaining=70, rate=10.0),),
            taken_at=1.0,
        )
    )


def _client(
    metrics: WorkerMetrics,
    *,
    token: str | None = None,
    known: Mapping[str, KnownInstance] | None = None,
) -> TestClient:
    source = StatusSource(
        application="app",
        instance_id="w1",
        metrics=metrics,
        topology_svg='<svg class="topology"></svg>',
        known=lambda: known or {"w1": KnownInstance("w1", "running")},
        token=token,
    )
    return TestClient(build_app(NoStores(), token=token, status=source))


def test_the_page_shows_the_instance_its_tasks_and_a_restore_bar() -> None:
    metrics = WorkerMetrics()
    _running(metrics)
    page = _client(metrics).get("/")
    assert page.status_code == 200
    html = page.text
    assert 'data-instance="w1"' in html and '<svg class="topology">' in html
    assert 'data-task="0_0" data-state="running"' in html
    assert 'data-task="0_1" data-state="restoring"' in html
    assert 'aria-valuenow="30.0"' in html and "7s left" in html  # 70 records at 10/s
    assert 'http-equiv="refresh"' in html


def test_an_instance_that_does_not_answer_is_shown_as_such() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    metrics = WorkerMetrics()
    _running(metrics)
    known = {
        "w1": KnownInstance("w1", "running"),
        "w2": KnownInstance("w2", "running", endpoint=endpoint, active_tasks=("0_2",)),
    }
    client = _client(metrics, known=known)
    page = client.get("/")
    assert page.status_code == 200
    assert "w2 — not answering" in page.text and "0_2" in page.text
    view = client.get("/v1/status").json()
    assert [i["instance"] for i in view["instances"]] == ["w1", "w2"]
    assert view["instances"][1]["figures"] is None and view["instances"][1]["problem"]


def test_figures_of_other_instances_are_gathered_from_their_endpoint() -> None:
    other = WorkerMetrics()
    _running(other, "w2")
    server = QueryServer(
        build_app(
            NoStores(),
            token=TOKEN,
            status=StatusSource("app", "w2", other, "", lambda: {}, token=TOKEN),
        ),
        "127.0.0.1",
        0,
    )
    try:
        metrics = WorkerMetrics()
        _running(metrics)
        known = {
            "w1": KnownInstance("w1", "running"),
            "w2": KnownInstance("w2", "running", endpoint=f"http://127.0.0.1:{server.port}"),
        }
        client = _client(metrics, token=TOKEN, known=known)
        view = client.get("/v1/status", headers={"authorization": f"Bearer {TOKEN}"}).json()
    finally:
        server.close()
    w2 = view["instances"][1]
    assert w2["problem"] is None and w2["figures"]["instance"] == "w2"
    assert {t["task"] for t in w2["figures"]["tasks"]} == {"0_0", "0_1"}


def test_with_a_token_the_page_asks_for_it_once_and_keeps_a_cookie() -> None:
    metrics = WorkerMetrics()
    _running(metrics)
    client = _client(metrics, token=TOKEN)
    form = client.get("/")
    assert form.status_code == 401 and 'name="token"' in form.text
    assert 'data-instance="w1"' not in form.text  # nothing of the data
    assert client.get("/v1/instance").status_code == 401

    wrong = client.post("/login", data={"token": "guess"}, follow_redirects=False)
    assert wrong.status_code == 401 and COOKIE_NAME not in client.cookies

    right = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/"
    set_cookie = right.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert TOKEN not in right.headers["set-cookie"]  # the cookie is not the token itself

    assert 'data-instance="w1"' in client.get("/").text
    assert client.get("/v1/instance").json()["instance"] == "w1"
    # The cookie is for the page and its data only: the rest still wants the bearer token.
    assert client.get("/v1/stores").status_code == 401
    assert client.get("/metrics").status_code == 401


def test_health_needs_no_token_and_says_only_ok() -> None:
    clock = Clock()
    metrics = WorkerMetrics(clock=clock)
    client = _client(metrics, token=TOKEN)
    live, ready = client.get("/health/live"), client.get("/health/ready")
    assert (live.status_code, ready.status_code) == (200, 503)  # starting: alive, not ready
    assert ready.json() == {"status": "not ok"}

    metrics.publish(WorkerSnapshot(instance="w1", state="waiting_for_members"))
    assert client.get("/health/ready").status_code == 503
    metrics.publish(WorkerSnapshot(instance="w1", state="running", restoring=2))
    assert client.get("/health/ready").json() == {"status": "ok"}  # a restore is not unready

    clock.now += LIVE_WITHIN_S + 1  # the main loop stopped publishing
    assert client.get("/health/live").status_code == 503
    assert client.get("/health/ready").status_code == 503


@pytest.mark.parametrize("state", ["failed", "stopped"])
def test_a_stopped_worker_is_not_live(state: str) -> None:
    metrics = WorkerMetrics()
    metrics.publish(WorkerSnapshot(instance="w1", state=state))
    assert _client(metrics).get("/health/live").status_code == 503
