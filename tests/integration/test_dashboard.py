"""The Grafana dashboard (deploy/grafana/dashboards/processor.json) shows data: a real
Prometheus (Debian's `prometheus`, installed by scripts/setup) scrapes two real workers running a
topology with a store, standbys, dead letters, an async operator and a sink, under load, with
one restore; every query of every panel must then return data (Grafana itself is not needed).

The queries run as Grafana runs them: over a time range (a restore's series ends with it)."""

from __future__ import annotations

import json
import math
import random
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.failover import KeyedLoad
from tests.integration.workers import REPO, WorkerProcess, start_worker

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "processor.json"
TOPOLOGY = "tests.integration.dashboard_topology:everything"
SCRAPE_INTERVAL = "1s"


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


class Prometheus:
    """`prometheus` on a free port of 127.0.0.1, scraping the targets of `set_targets`."""

    def __init__(self, workdir: Path) -> None:
        self._targets = workdir / "targets.json"
        self._targets.write_text("[]")
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": SCRAPE_INTERVAL},
                    "scrape_configs": [
                        {
                            "job_name": "processor",
                            "file_sd_configs": [
                                {"files": [str(self._targets)], "refresh_interval": "1s"}
                            ],
                        }
                    ],
                }
            )
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def set_targets(self, workers: list[WorkerProcess]) -> None:
        hosts = [urllib.parse.urlsplit(w.url()).netloc for w in workers]
        staged = self._targets.with_suffix(".tmp")
        staged.write_text(json.dumps([{"targets": hosts}]))
        staged.replace(self._targets)  # whole, never half-written, when Prometheus reads it

    def query_range(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{params}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._log.close()


def has_data(series: list[dict[str, Any]]) -> bool:
    """A point that is a number (a quantile of no observations is NaN: nothing to see)."""
    return any(not math.isnan(float(v)) for s in series for _, v in s["values"])


def without_data(prometheus: Prometheus, start: float, titles: set[str] | None = None) -> set[str]:
    """Panels (of `titles`, or all) of which some query returns no data."""
    missing = set()
    for title, expr in panel_queries():
        if titles is not None and title not in titles:
            continue
        if not has_data(prometheus.query_range(expr, start, time.time())):
            missing.add(f"{title}: {expr}")
    return missing


def wait_for_data(prometheus: Prometheus, start: float, titles: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while missing := without_data(prometheus, start, titles):
        assert time.monotonic() < deadline, "panels without data:\n" + "\n".join(sorted(missing))
        time.sleep(1.0)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path)
    yield server
    server.stop()


RESTORE_PANELS = {"Restore progress", "Rebalance duration"}


def test_every_dashboard_panel_shows_data_from_a_running_application(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, prometheus: Prometheus
) -> None:
    titles = {title for title, _ in panel_queries()}
    assert titles >= RESTORE_PANELS
    sink_dir = tmp_path / "sink"
    sink_dir.mkdir()
    env = {**topics, "TEST_SINK_DIR": str(sink_dir)}
    settings = [
        "--num-standby-replicas",
        "1",
        "--processing-error-handler",
        "dead_letter",
    ]
    workers: dict[str, WorkerProcess] = {}

    def start(instance: str, *extra: str, **more_env: str) -> None:
        workers[instance] = start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env={**env, **more_env},
            workdir=tmp_path,
            instance=instance,
            extra=[*settings, *extra],
        )

    rng = random.Random(19)
    keys = [f"k{rng.randrange(3_000)}" for _ in range(20_000)]
    load = KeyedLoad(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], keys, rate=1_000)
    began = time.time()
    try:
        start("w0")
        start("w1")
        prometheus.set_targets(list(workers.values()))
        load.start()
        # Steady state: everything but what a restore and a second rebalance bring.
        wait_for_data(prometheus, began, titles - RESTORE_PANELS, timeout=60)

        steady = time.time() - began

        # A restore. A worker joining a running application warms its tasks up as standbys
        # first, so the application stops: w1 leaves (w0 rebalances), then w0, w1's state is
        # wiped, and w1 comes back alone and restores every task from the changelogs, held
        # after its first batch until Prometheus has scraped it (a new target can take ~5 s).
        w0_log = len(workers["w0"].log())
        workers["w1"].terminate()
        workers["w0"].wait_for_log(r"members \[w0\];", timeout=30, after=w0_log)
        # rate() needs the rebalance counted between two scrapes of w0: wait until they saw it
        # (w0 publishes its metrics once a second; stopped at once, it was not always scraped).
        wait_for_data(prometheus, began, {"Rebalance duration"}, timeout=30)
        workers["w0"].terminate()
        shutil.rmtree(tmp_path / "state" / "w1")
        hold = tmp_path / "hold-restore"
        hold.touch()
        start("w1", TEST_RESTORE_HOLD_FILE=str(hold))
        prometheus.set_targets([workers["w1"]])
        wait_for_data(prometheus, began, RESTORE_PANELS, timeout=30)
        hold.unlink()
        load.join(60)
    finally:
        for worker in workers.values():
            worker.stop_quietly()
    print(
        f"{len(titles)} panels: data in steady state after {steady:.1f}s, "
        f"from the restore too after {time.time() - began:.1f}s"
    )
