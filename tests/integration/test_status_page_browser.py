"""The status page as a person sees it: loaded in headless Chromium (Debian's `chromium`, which
`scripts/setup` installs) from a running 3-worker application with standbys. The page lists
every instance and its tasks; a worker whose state was wiped shows its tasks restoring, with
bars that move from one load of the page to the next; a worker with an HTTP token shows the
token form to a browser without its cookie, and none of the data. `processor status APP` shows
the same instances and tasks in a terminal."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.browser import Browser
from tests.integration.failover import produce_keys
from tests.integration.workers import WorkerProcess, start_worker

TOPOLOGY = "tests.worker_topologies:keyed_counting"
KEYS = 30_000  # 5,000 per task: one changelog record each
# The restorer waits this long per record it applied (tests/worker_topologies.py), and reads
# small batches, so that a restore of 10,000 records lasts about 10 s and moves in steps.
RESTORE_PAUSE_US = "1000"
SMALL_BATCHES = [
    "--kafka",
    "producer.batch.size=2048",  # the changelogs' record batches: 50 to 100 records
    "--kafka",
    "consumer.max.partition.fetch.bytes=1024",  # one record batch a fetch
    "--kafka",
    "consumer.queued.max.messages.kbytes=1",  # none fetched ahead while the restorer waits
]
# Static members: a worker killed and started again within the session timeout keeps its tasks
# without a rebalance or a warm-up, so it restores them as active tasks.
STANDBYS = ["--num-standby-replicas", "1", "--static-membership"]

_INSTANCE = re.compile(r'data-instance="([^"]+)"')
_TASK = re.compile(r'data-task="([^"]+)" data-state="([^"]+)"')
_ROW = re.compile(r'<tr class="task" data-task="([^"]+)" data-state="([^"]+)">(.*?)</tr>', re.S)
_BAR = re.compile(r'aria-valuenow="([\d.]+)"')


def restore_bars(page: str) -> dict[str, float]:
    """Task -> how far its restore is (%), for the restoring tasks with a bar on `page`."""
    bars = {}
    for task, state, row in _ROW.findall(page):
        bar = _BAR.search(row)
        if state == "restoring" and bar is not None:
            bars[task] = float(bar.group(1))
    return bars


def instance_figures(worker: WorkerProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{worker.url()}/v1/instance", timeout=5) as response:
        figures: dict[str, Any] = json.loads(response.read())
    return figures


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with Browser() as started:
        yield started


@pytest.fixture
def workers() -> Iterator[dict[str, WorkerProcess]]:
    started: dict[str, WorkerProcess] = {}
    yield started
    for worker in started.values():
        worker.stop_quietly()


def test_the_status_page_in_a_browser(
    kafka_bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    workers: dict[str, WorkerProcess],
    browser: Browser,
) -> None:
    env = {**topics, "TEST_RESTORE_PAUSE_US": RESTORE_PAUSE_US}

    def start(instance: str, *extra: str) -> WorkerProcess:
        workers[instance] = start_worker(
            TOPOLOGY,
            bootstrap=kafka_bootstrap,
            env=env,
            workdir=tmp_path,
            instance=instance,
            extra=[*STANDBYS, *SMALL_BATCHES, *extra],
        )
        return workers[instance]

    for instance in ("w0", "w1", "w2"):
        start(instance)
    # Another application, with a token: its page asks a browser without the cookie for it.
    workers["t0"] = start_worker(
        "tests.worker_topologies:tagging",
        bootstrap=kafka_bootstrap,
        env={**topics, "PROCESSOR_APPLICATION_ID": topics["PROCESSOR_APPLICATION_ID"] + "-t"},
        workdir=tmp_path,
        instance="t0",
        extra=["--http-token", "s3cret"],
    )
    # Produced once the group has formed, so that no task moves and every count stays where
    # the page reads it.
    for instance in ("w0", "w1", "w2"):
        workers[instance].wait_for_log(r"members \[w0, w1, w2\]; active tasks", 60)
    produce_keys(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], KEYS)

    def counted() -> bool:
        figures = [instance_figures(workers[i]) for i in ("w0", "w1", "w2")]
        processed = sum(t["processed"] for f in figures for t in f["tasks"])
        standbys_warm = all(
            t["remaining"] == 0 for f in figures for t in f["tasks"] if t["state"] == "standby"
        )
        return processed == KEYS and standbys_warm

    wait_until(counted, 60, f"the {KEYS} records to be counted and the standbys to catch up")

    page = browser.dom(browser.open(workers["w0"].url()))
    assert sorted(set(_INSTANCE.findall(page))) == ["w0", "w1", "w2"]
    states = _TASK.findall(page)
    assert sorted(t for t, s in states if s == "running") == [f"0_{p}" for p in range(6)]
    assert sorted(set(t for t, s in states if s == "standby")) == [f"0_{p}" for p in range(6)]
    assert "Sub-topology 0" in page and "not answering" not in page

    # The same in a terminal, the worker found on the metadata topic.
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "processor.cli",
            "status",
            topics["PROCESSOR_APPLICATION_ID"],
            "--bootstrap-servers",
            kafka_bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "3 instances, 3 answering" in shown.stdout
    table = [line.split() for line in shown.stdout.splitlines()]
    assert sorted(row[0] for row in table if row[1:2] == ["running"] and row[0][:2] == "0_") == [
        f"0_{p}" for p in range(6)
    ]

    token_page = browser.dom(browser.open(workers["t0"].url()))
    assert 'name="token"' in token_page and "data-instance" not in token_page

    # Wipe w1's state and start it again: it keeps its tasks, and restores them from scratch.
    workers["w1"].kill()
    shutil.rmtree(tmp_path / "state" / "w1")
    restarted = start("w1")

    def restoring() -> bool:
        return any(
            t["state"] == "restoring" and t["restored"] > 0 and t["remaining"] > 0
            for t in instance_figures(restarted)["tasks"]
        )

    wait_until(restoring, 60, "w1 to restore its tasks")
    tab = browser.open(restarted.url())
    first = restore_bars(browser.dom(tab))
    assert first, "no restore bar on the first load"
    with urllib.request.urlopen(f"{restarted.url()}/health/ready", timeout=5) as response:
        assert response.status == 200  # restoring, and ready
    # The page reloads itself every few seconds: the bars move (or the restore ends) within a
    # few loads. One batch of the restorer can take a second or two here.
    deadline = time.monotonic() + 20
    moved: list[str] = []
    while not moved:
        assert time.monotonic() < deadline, f"no restore bar moved from {first}"
        later = restore_bars(browser.next_load(tab))
        # A task no longer restoring has finished: its bar went all the way.
        moved = [t for t in first if later.get(t, 100.0) > first[t]]
