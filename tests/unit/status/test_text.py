"""`processor status`: the status view as text, and the command against a worker's HTTP
server."""

from __future__ import annotations

import pytest

from processor.cli import main
from processor.metrics import FailureNote, RestoreSample, WorkerMetrics, WorkerSnapshot
from processor.query.server import QueryServer, build_app
from processor.query.status_routes import StatusSource
from processor.status.text import bar, render_text
from processor.status.view import (
    InstanceFigures,
    KnownInstance,
    TaskFigures,
    build_view,
)
from tests.unit.test_metrics import NoStores


def test_a_bar_fills_its_fraction() -> None:
    assert bar(0.0, 4) == "[    ]"
    assert bar(0.5, 4) == "[##  ]"
    assert bar(1.0, 4) == "[####]"


def test_every_instance_and_task_is_a_line() -> None:
    figures = InstanceFigures(
        "w1",
        "running",
        tasks=(
            TaskFigures("0_0", "running", processed=10, processed_per_s=1500.0, consumer_lag=3),
            TaskFigures("0_1", "restoring", restored=250, remaining=750, restore_per_s=125.0),
        ),
        commits=7,
    )
    view = build_view(
        "app",
        "w1",
        {
            "w1": KnownInstance("w1", "running", host="h1"),
            "w2": KnownInstance("w2", "running", active_tasks=("0_2",)),
        },
        {"w1": figures, "w2": "no answer within 1.5 s"},
    )
    lines = render_text(view).splitlines()
    assert lines[0] == "app: 2 instances, 1 answering (seen by w1)"
    assert "w1  running  (running, h1, 7 commits)" in lines
    running = next(line for line in lines if line.strip().startswith("0_0"))
    assert running.split() == ["0_0", "running", "3", "1,500/s"]
    restoring = next(line for line in lines if line.strip().startswith("0_1"))
    assert "[#####               ] 250/1,000 125/s 6s left" in restoring
    assert any(line.startswith("w2  NOT ANSWERING") for line in lines)
    assert "active tasks by the assignment: 0_2" in render_text(view)


def test_the_command_prints_the_status_a_worker_serves(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = WorkerMetrics()
    metrics.publish(
        WorkerSnapshot(
            instance="w1",
            state="running",
            processed={"0_0": 5},
            restores=(RestoreSample("0_1", standby=True, records=9, remaining=1, rate=3.0),),
            recent_failures=(FailureNote(0, "0_0", "skipped", "in[0]@4", "ValueError: bad"),),
        )
    )
    source = StatusSource("app", "w1", metrics, "", lambda: {}, token="t")
    server = QueryServer(build_app(NoStores(), token="t", status=source), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert main(["status", url, "--token", "t"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("app: 1 instances, 1 answering (seen by w1)")
        assert "0_1" in out and "standby" in out and "9/10" in out
        assert "skipped in[0]@4 (task 0_0): ValueError: bad" in out
        assert main(["status", url, "--token", "wrong"]) == 2
        assert "401" in capsys.readouterr().err
    finally:
        server.close()


def test_an_application_id_needs_bootstrap_servers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROCESSOR_BOOTSTRAP_SERVERS", raising=False)
    assert main(["status", "app"]) == 2
    assert "--bootstrap-servers" in capsys.readouterr().err
