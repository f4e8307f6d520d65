"""A worker's start-up, from launch to its first output, phase by phase (issue 20).

    .venv/bin/python -m bench.startup [--runs 5] [--records 10000]
        [--checkout NAME=PATH ...] [--json PATH]

Each run starts one worker of the stateless bench topology (`processor run
bench.contenders.ours_topology`, BENCH_WORKLOAD=stateless: filter, map_values, to) as a fresh
application on input that is already in its topic (6 partitions, --records records), with the
query API on a port chosen beforehand, and notes, in seconds from the moment the process was
launched:

- `imported`: the worker's "created -> starting" line (Python, the package and the topology
  imported, the settings read);
- `checked`: its "application ..., N tasks" line (settings and cluster checked, the topics
  checked or created);
- `http_logged`: its "serving the query API" line;
- `http_answers`: the first answer of GET /health/live (polled every 10 ms from launch);
- `joining`: "starting -> waiting_for_members" (subscribed to the group);
- `assigned`: "members [...]; active tasks [...]" (the generation accepted);
- `running`: "waiting_for_members -> running";
- `first_output`, `all_output`: the first and the last expected output record's LogAppendTime
  (the output topic is created with `message.timestamp.type=LogAppendTime`, so the broker stamps
  each record as it is written).

With `--checkout NAME=PATH` (repeatable) the worker runs from the checkout at PATH
(PYTHONPATH and working directory) under NAME; the checkouts take turns run by run, so a change
in the machine's load falls on each alike. Default: this checkout, as `ours`. Each figure is the
median of --runs runs, with min and max; the 1-minute load average is sampled at every run.

It starts its own broker (`LocalBroker`) unless PROCESSOR_TEST_BOOTSTRAP names one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, TopicPartition

from bench.compare import PARTITIONS, create_topic, delete_topics_of, produce

REPO = Path(__file__).resolve().parent.parent
# The log lines that end each phase (processor/runtime/worker.py, assembly.py, rebalance.py).
PHASES: dict[str, re.Pattern[str]] = {
    "imported": re.compile(r"created -> starting"),
    "checked": re.compile(r"application \S+, \d+ sub-topologies"),
    "http_logged": re.compile(r"serving the query API"),
    "joining": re.compile(r"starting -> waiting_for_members"),
    "assigned": re.compile(r"members \[.*\]; active tasks"),
    "running": re.compile(r"waiting_for_members -> running"),
}
ORDER = [
    "imported",
    "checked",
    "http_logged",
    "http_answers",
    "joining",
    "assigned",
    "running",
    "first_output",
    "all_output",
]
# The longest a run may take to produce every output.
RUN_TIMEOUT_S = 60.0
HEALTH_POLL_S = 0.01
# How long the health endpoint may take to answer after the last output.
HEALTH_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class HealthPoll:
    """GET /health/live every HEALTH_POLL_S until it answers; `answered` is the wall time."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/health/live"
        self.answered: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=0.5) as response:
                    if response.status == 200:
                        self.answered = time.time()
                        return
            except OSError:
                pass
            self._stop.wait(HEALTH_POLL_S)

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def read_outputs(bootstrap: str, topic: str, expected: int, launched: float) -> tuple[float, float]:
    """(first, last) LogAppendTime of the `expected` outputs on `topic`, in seconds after
    `launched`."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-startup-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    first, last, read = float("inf"), 0.0, 0
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while read < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{read} of {expected} outputs in {RUN_TIMEOUT_S:g} s")
            for message in consumer.consume(10000, 0.1):
                if message.error():
                    raise RuntimeError(f"reading the output: {message.error()}")
                kind, stamp_ms = message.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    raise RuntimeError(f"{topic} is not LogAppendTime ({kind})")
                first, last = min(first, stamp_ms / 1000), max(last, stamp_ms / 1000)
                read += 1
    finally:
        consumer.close()
    return first - launched, last - launched


def phase_times(log: Path, launched: float) -> dict[str, float]:
    """Seconds from `launched` to the first line of each phase in the worker's JSON log."""
    found: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue  # librdkafka's own lines
        entry = json.loads(line)
        for phase, pattern in PHASES.items():
            if phase not in found and pattern.search(entry["message"]):
                found[phase] = datetime.fromisoformat(entry["time"]).timestamp() - launched
    return found


def one_run(
    bootstrap: str, checkout: Path, source: str, expected: int, work: Path
) -> dict[str, Any]:
    app_id = f"bench-startup-{uuid.uuid4().hex[:8]}"
    sink = f"{app_id}-out"
    create_topic(bootstrap, sink, config={"message.timestamp.type": "LogAppendTime"})
    port = free_port()
    log = work / f"{app_id}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROCESSOR_", "BENCH_"))}
    env.update(
        BENCH_INPUT=source, BENCH_OUTPUT=sink, BENCH_WORKLOAD="stateless", PYTHONPATH=str(checkout)
    )
    command = [
        sys.executable,
        "-m",
        "processor.cli",
        "run",
        "bench.contenders.ours_topology",
        *("--bootstrap-servers", bootstrap, "--application-id", app_id),
        *("--state-dir", str(work / app_id), "--http-port", str(port), "--log-format", "json"),
    ]
    load = os.getloadavg()[0]
    with open(log, "wb") as out:
        launched = time.time()
        health = HealthPoll(port)
        worker = subprocess.Popen(command, cwd=checkout, env=env, stdout=out, stderr=out)
        try:
            first, last = read_outputs(bootstrap, sink, expected, launched)
            health.wait(HEALTH_TIMEOUT_S)  # it may answer after the last output
        finally:
            health.stop()
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
    times = phase_times(log, launched)
    missing = [phase for phase in PHASES if phase not in times]
    answered = health.answered
    if missing or answered is None:
        raise RuntimeError(f"no line for {missing} in {log}, or no answer from {health.url}")
    times["http_answers"] = answered - launched
    times.update(first_output=first, all_output=last, load=load)
    delete_topics_of(bootstrap, sink, containing=app_id)
    return times


def summary(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per phase: [median, min, max] over the runs."""
    result = {}
    for phase in ORDER:
        values = [run[phase] for run in runs if phase in run]
        if values:
            result[phase] = [statistics.median(values), min(values), max(values)]
    return result


def table(results: dict[str, dict[str, list[float]]]) -> str:
    names = list(results)
    lines = [
        "| phase (s from launch) | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for phase in ORDER:
        cells = []
        for name in names:
            figure = results[name].get(phase)
            cells.append("-" if figure is None else "{:.2f} [{:.2f}-{:.2f}]".format(*figure))
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    given = os.environ.get("PROCESSOR_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    from processor.testing.broker import LocalBroker

    with LocalBroker() as local:
        yield local.bootstrap_servers


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--checkout", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    checkouts = {"ours": REPO}
    if args.checkout:
        checkouts = {n: Path(p).resolve() for n, p in (c.split("=", 1) for c in args.checkout)}
    expected = sum(1 for i in range(args.records) if i % 4 != 0)
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
    try:
        with broker() as bootstrap:
            source = f"bench-startup-input-{uuid.uuid4().hex[:6]}"
            create_topic(bootstrap, source)
            produce(
                bootstrap,
                source,
                [(b"k%d" % (i % 1000), b"%d" % i, None) for i in range(args.records)],
            )
            for index in range(args.runs):
                for name, path in checkouts.items():
                    figures = one_run(bootstrap, path, source, expected, work)
                    runs[name].append(figures)
                    shown = ", ".join(f"{p} {figures[p]:.2f}" for p in ORDER if p in figures)
                    print(
                        f"run {index + 1} {name} (load {figures['load']:.2f}): {shown}", flush=True
                    )
            delete_topics_of(bootstrap, source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {name: summary(figures) for name, figures in runs.items()}
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "checkouts": {n: str(p) for n, p in checkouts.items()},
                    "runs": runs,
                    "summary": results,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
