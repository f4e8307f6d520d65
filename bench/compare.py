"""Side-by-side benchmark on one local broker: this project against a raw confluent-kafka loop,
Quix Streams, Faust (faust-streaming) and Kafka Streams, on the same generated input.

    .venv/bin/python -m bench.compare [--records 2000000] [--keys 100000] [--runs 3]
        [--contenders raw,ours,quix,faust,kafka-streams]
        [--workloads stateless,count-alos,count-eos,count-window-alos,count-window-eos,
                     process-alos,process-eos,process-timers-alos,process-timers-eos,restore,
                     failover] [--workers 1,2] [--windows 10] [--json PATH]

Workloads (6 partitions; key ``k<n>`` for n < --keys, value the record's sequence number; the
record timestamps rise evenly over --windows minutes that ended at the minute before the input
was produced, in record order, so each partition is in timestamp order):

- ``stateless``: keep the records whose number is not divisible by 4, double the number;
  at-least-once. Checked: every expected output (key and value) arrived, nothing else did,
  and the checksum of the distinct outputs matches.
- ``count-alos``, ``count-eos``: count per key, each update written out; at-least-once and
  exactly-once. Checked: every key's last count equals the truth (under at-least-once with two
  workers a key may be over-counted after a rebalance: none may be short, the over-counted
  keys are reported). Every run also reads 2 s past the end, so late extra outputs are caught.
- ``count-window-alos``, ``count-window-eos``: the same input counted per key in tumbling
  windows of 60 s (grace 0; by the records' timestamps, so --windows windows roll over in the
  course of the input, one after the other), each update written out under the key
  ``<key>@<window start ms>`` (ours: emit="update"; Kafka Streams: its default, emit on update
  through its record cache; Quix Streams: `.current()`). Checked as the count, per (key, window):
  every window's last count equals the truth, and an output for a window that holds no record
  (a record put in the wrong window) fails the run.
- ``process-alos``, ``process-eos`` (ours and the raw loop): one `process()` operator keeping a
  running sum per key of the records' numbers in a store (a get, a put and a forward per
  record), each new sum written out. Checked: every key's last sum equals the truth.
- ``process-timers-alos``, ``process-timers-eos``: the same operator, plus per record
  `ctx.set_timer(ctx.timestamp + 60_000)` (the key's stream-clock timer, replaced by each of its
  records) and an `on_timer` that writes the key's sum under ``<key>@<at_ms>``; with the input's
  timestamps over --windows minutes, a key's timer fires whenever its partition's stream time
  gets 60 s past the key's last record. Checked: the sums, and the firings exactly: the input
  is read back once (untimed) and each partition replayed in offset order against a model
  (stream time = the largest timestamp so far; a record first replaces its key's timer, then
  every timer due by the stream time fires, by time then key), which gives every expected
  ``<key>@<at_ms>`` and the sum it carries; a missing, extra, duplicated or wrong firing fails
  the run. Kafka Streams has punctuators, not per-key timers, and Quix Streams and Faust have
  neither: they do not run these.
- ``restore``: each contender's count application first counts --restore-keys distinct keys
  (not timed), leaving a changelog of that many records; every run then starts it with an
  empty state directory and one new record per partition, timed until the outputs of all six
  are read: changelog records / seconds, process start and group join included. Ours also gets
  the in-process figure of `bench/restore.py` (changelog to RocksDB, nothing else).
- ``failover``: the same scenario for every contender that has a changelogged store (ours, Kafka
  Streams, Quix Streams; see `Bench.failover_run`): 3 workers of its count application,
  exactly-once, with 1 standby replica and with none, first count --failover-keys distinct keys
  (not timed: the state to fail over); then --failover-rate records/s over 600 hot keys (100 per
  partition) for 10 s; then SIGKILL one worker. Failover = the longest time, over the hot keys,
  from the SIGKILL until the key's first output written after it is read (read_committed); the
  time it was written (the sink's LogAppendTime) is reported too. Every hot key's counts must go
  up by one per output and end at what was produced.

Each contender runs as separate OS processes (``--workers 2``: two processes in one group; ours
uses ``processor run --workers 2``) with a fresh output topic and application id; a run is
timed from the first process start until the last expected output is read (read_committed).
Every figure is the median of --runs runs, with min and max; a wrong run fails its cell (and
its remaining runs are skipped). While a run goes, the application's committed input offsets
are watched: all input committed with outputs still missing 30 s later fails the run, and a
run that after a minute projects past --timeout is stopped and its cell shows the approximate
rate, unchecked ("too slow"). Under at-least-once with two workers, duplicated outputs and
over-counted keys are allowed (a rebalance may replay records) and reported in the cell.

Quix Streams, Faust and matplotlib are installed into `.cache/bench-contenders` (a venv of its
own, created when missing); Kafka Streams is built with Maven into `.cache/bench-kafka-streams`.
Results go to bench/results/compare.json, bench/results/compare.png and the section of
bench/RESULTS.md between the `compare` markers (with --json PATH: only PATH is written, and
RESULTS.md and the PNG are left alone). It starts its own broker (`LocalBroker`) unless
PROCESSOR_TEST_BOOTSTRAP names one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import heapq
import importlib.metadata
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from bench.contenders import JOIN_WORKLOAD, PROCESS_WORKLOADS, TIMER_DELAY_MS, WINDOW_SIZE_MS
from bench.stateful_count import broker
from processor.testing.broker import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS_DIR = BENCH / "results"
RESULTS_MD = BENCH / "RESULTS.md"
JSON_PATH = RESULTS_DIR / "compare.json"
START_MARK, END_MARK = "<!-- compare:start -->", "<!-- compare:end -->"
PARTITIONS = 6
SEED = 20261125
SETTLE_S = 2.0  # reading on after the last expected output, to catch late extra outputs
STOP_TIMEOUT_S = 40.0
ALL_COMMITTED_GRACE_S = 30.0  # all input committed and no output for this long: outputs missing
PREPARE_TIMEOUT_S = 900.0  # counting the keys to restore: slow contenders get to finish it

# The failover workload. The same settings for every contender: bench/failover.py's session
# timeout (6 s, heartbeat 0.5 s) and commit interval (200 ms), and the 10 s transaction timeout
# ours and Kafka Streams use under exactly-once (librdkafka's default, which Quix keeps, is 60 s):
# a dead worker's open transaction holds back read_committed readers of the partitions it wrote
# to until it is aborted, which is part of what a downstream reader sees of a failover.
FAILOVER_WORKERS = 3
FAILOVER_VICTIM = 1  # the worker killed (index)
FAILOVER_HOT_KEYS = 600  # h<i> to partition i % 6: each recurs every 60 ms at 10,000 records/s
FAILOVER_STEADY_S = 10.0  # steady load before the kill
FAILOVER_AFTER_S = 2.0  # load kept on after every hot key is back, then stopped
FAILOVER_TIMEOUT_S = 90.0  # SIGKILL until every hot key is back
FAILOVER_DRAIN_S = 60.0  # load stopped until every final count is read
FAILOVER_SLOW_S = 1.0  # a hot key back later than this was stopped by the failover (reported)
FAILOVER_KAFKA = {
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "500",
}
FAILOVER_COMMIT_MS = 200
FAILOVER_TRANSACTION_MS = "10000"

CONTENDERS_VENV = ROOT / ".cache" / "bench-contenders"
# psycopg2-binary: Quix Streams' PostgreSQLSink needs it (bench/postgres_e2e.py)
CONTENDERS_REQUIREMENTS = [
    "quixstreams==3.28.1",
    "faust-streaming==0.15.3",
    "matplotlib==3.11.2",
    "psycopg2-binary==2.9.13",
]
KS_PROJECT = BENCH / "contenders" / "kafka-streams"
KS_BUILD = ROOT / ".cache" / "bench-kafka-streams"

# The join workloads: a table of --keys customers, and --records orders; one order in
# JOIN_MISSING_EVERY asks for a customer the table does not have (the left join's None).
JOIN_MISSING_EVERY = 20
JOIN_LOAD_TIMEOUT_S = 180.0  # a probe round: contender start (the JVM's too) and table load
JOIN_PROBE_PAUSE_S = 0.5  # between probe rounds, while a contender has not loaded its table

# The count-window workloads' input: its timestamps span this many 60 s windows by default (see
# make_input), so that windows open and close in the course of every run. At 1,000,000 records
# over 100,000 keys, a window holds 100,000 records over ~63,000 keys.
WINDOWS = 10

ALL_CONTENDERS = ["raw", "ours", "quix", "faust", "kafka-streams"]
# Run only when named: this project at another commit, checked out at $BENCH_BEFORE (e.g. with
# `git worktree add /tmp/before <commit>`), for a before/after comparison in one run.
OPTIONAL_CONTENDERS = ["ours-before"]
LABELS = {
    "raw": "raw confluent-kafka loop",
    "ours-before": "processor before ($BENCH_BEFORE)",
    "ours": "processor (ours)",
    "quix": "Quix Streams",
    "faust": "Faust",
    "kafka-streams": "Kafka Streams",
}
THROUGHPUT_WORKLOADS = {  # name: (program workload, guarantee, description)
    "stateless": ("stateless", "at_least_once", "stateless filter + map, at-least-once"),
    "count-alos": ("count", "at_least_once", "count per key, at-least-once"),
    "count-eos": ("count", "exactly_once", "count per key, exactly-once"),
    "count-window-alos": (
        "count-window",
        "at_least_once",
        "count per key in 60 s tumbling windows, at-least-once",
    ),
    "count-window-eos": (
        "count-window",
        "exactly_once",
        "count per key in 60 s tumbling windows, exactly-once",
    ),
    "process-alos": (
        "process",
        "at_least_once",
        "process(): running sum per key in a store, at-least-once",
    ),
    "process-eos": (
        "process",
        "exactly_once",
        "process(): running sum per key in a store, exactly-once",
    ),
    "process-timers-alos": (
        "process-timers",
        "at_least_once",
        "process() with a stream-clock timer set per record, at-least-once",
    ),
    "process-timers-eos": (
        "process-timers",
        "exactly_once",
        "process() with a stream-clock timer set per record, exactly-once",
    ),
    "join-alos": (
        JOIN_WORKLOAD,
        "at_least_once",
        "stream-table left join (orders with their customer, JSON), at-least-once",
    ),
    "join-eos": (
        JOIN_WORKLOAD,
        "exactly_once",
        "stream-table left join (orders with their customer, JSON), exactly-once",
    ),
}
WINDOWED = {
    name for name, (program, _, _) in THROUGHPUT_WORKLOADS.items() if program == "count-window"
}
# The process() workloads: ours and the raw loop only (per-key timers are ours).
PROCESSING = {
    name for name, (program, _, _) in THROUGHPUT_WORKLOADS.items() if program in PROCESS_WORKLOADS
}
NOT_PROCESS = "not measured: process() with per-key timers is this project's (issue 16)"
# The stream-table join workloads (issue 17).
JOINING = {
    name for name, (program, _, _) in THROUGHPUT_WORKLOADS.items() if program == JOIN_WORKLOAD
}
ALL_WORKLOADS = [*THROUGHPUT_WORKLOADS, "restore", "failover"]


class RunFailed(Exception):
    """A run went wrong (a process died, a wrong or missing output, a timeout)."""


class TooSlow(RunFailed):
    """A run was stopped because it would not finish within the timeout."""

    def __init__(self, message: str, rate: float) -> None:
        super().__init__(message)
        self.rate = rate


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- setting up the contenders ----------------------------------------------------------------


def contenders_python() -> Path:
    """The contenders' venv (Quix Streams, Faust, matplotlib), created or completed if needed."""
    python = CONTENDERS_VENV / "bin" / "python"
    marker = CONTENDERS_VENV / ".installed"
    wanted = "\n".join(CONTENDERS_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    progress(f"installing {', '.join(CONTENDERS_REQUIREMENTS)} into {CONTENDERS_VENV}")
    if not python.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(CONTENDERS_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *CONTENDERS_REQUIREMENTS], check=True
    )
    marker.write_text(wanted)
    return python


def kafka_streams_classpath() -> str:
    """Build bench/contenders/kafka-streams with Maven once (again when its sources change)."""
    sources = [KS_PROJECT / "pom.xml", *sorted(KS_PROJECT.glob("src/**/*.java"))]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    marker = KS_BUILD / ".built"
    if not (marker.exists() and marker.read_text() == digest):
        progress(f"building the Kafka Streams contender with Maven into {KS_BUILD}")
        shutil.rmtree(KS_BUILD, ignore_errors=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KS_PROJECT / "pom.xml"),
                f"-Dbench.out={KS_BUILD}",
                "compile",
                "dependency:copy-dependencies",
            ],
            check=True,
        )
        marker.write_text(digest)
    return f"{KS_BUILD / 'classes'}:{KS_BUILD / 'lib'}/*"


# --- contenders -------------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    """What one run starts: each command is one OS process (one worker, or ours' supervisor)."""

    commands: list[list[str]]
    env: dict[str, str]
    cwd: Path = ROOT


class Contender:
    name = ""
    count_format = "text"  # how the count workload writes a count: "text" or "long" (8 bytes)
    restore_changelog_marker = "changelog"  # a changelog topic name holds the app id and this

    def unsupported(self, workload: str, workers: int) -> str | None:
        """Why this contender cannot run the workload, or None."""
        return None

    def job(
        self,
        bootstrap: str,
        source: str,
        sink: str,
        app_id: str,
        workload: str,
        guarantee: str,
        state_dir: Path,
        workers: int,
        table: str = "",
    ) -> Job:
        raise NotImplementedError

    def notes(self, workload: str) -> str:
        return ""

    def failover_job(
        self, bootstrap: str, source: str, sink: str, app_id: str, state_dir: Path, standbys: int
    ) -> Job:
        """FAILOVER_WORKERS processes (one command each, so one can be killed) of the count
        application, exactly-once, `standbys` standby replicas, the FAILOVER_* settings."""
        raise NotImplementedError

    def replayed(self, log: str) -> int | None:
        """Changelog records restored according to this part of a worker's log, or None when
        the contender does not log them."""
        return None


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSOR_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class PythonContender(Contender):
    module = ""

    def python(self) -> str:
        return str(contenders_python())

    def job(
        self,
        bootstrap: str,
        source: str,
        sink: str,
        app_id: str,
        workload: str,
        guarantee: str,
        state_dir: Path,
        workers: int,
        table: str = "",
    ) -> Job:
        commands = [
            [
                self.python(),
                "-m",
                self.module,
                "--bootstrap",
                bootstrap,
                "--input",
                source,
                "--output",
                sink,
                "--app-id",
                app_id,
                "--workload",
                workload,
                "--guarantee",
                guarantee,
                "--state-dir",
                str(state_dir / f"worker-{index}"),
                "--worker-index",
                str(index),
                "--workers",
                str(workers),
                *(["--table", table] if table else []),
            ]
            for index in range(workers)
        ]
        return Job(commands, base_env())


class RawLoop(PythonContender):
    name = "raw"
    module = "bench.contenders.raw_loop"
    count_format = "long"

    def python(self) -> str:
        return sys.executable  # the project's venv: same confluent-kafka as ours

    def unsupported(self, workload: str, workers: int) -> str | None:
        if workload == "restore" or workload.startswith("failover"):
            return "keeps counts in memory: no changelog, nothing to restore or fail over"
        if workload in WINDOWED:
            return "no windows"
        return None

    def notes(self, workload: str) -> str:
        return (
            "the ceiling: counts in a dict (no store, no changelog), partitions split by "
            "index among the workers (no rebalancing)"
        )


class Quix(PythonContender):
    name = "quix"
    module = "bench.contenders.quix_app"

    def unsupported(self, workload: str, workers: int) -> str | None:
        if workload == "failover-1sb":
            return "Quix Streams has no standby replicas"
        if workload in PROCESSING:
            return NOT_PROCESS
        return None

    def failover_job(
        self, bootstrap: str, source: str, sink: str, app_id: str, state_dir: Path, standbys: int
    ) -> Job:
        job = self.job(
            bootstrap, source, sink, app_id, "count", "exactly_once", state_dir, FAILOVER_WORKERS
        )
        for command in job.commands:
            command += ["--commit-interval", str(FAILOVER_COMMIT_MS / 1000)]
            for key, value in FAILOVER_KAFKA.items():
                command += ["--consumer-setting", f"{key}={value}"]
            command += ["--producer-setting", f"transaction.timeout.ms={FAILOVER_TRANSACTION_MS}"]
        return job


class Faust(PythonContender):
    name = "faust"
    module = "bench.contenders.faust_app"

    def unsupported(self, workload: str, workers: int) -> str | None:
        if workload in WINDOWED:
            return "not measured (issue 15 compares ours, Kafka Streams and Quix Streams)"
        if workload in JOINING:
            return "Faust has no joins"
        if workload in PROCESSING:
            return NOT_PROCESS
        if workload.startswith("failover"):
            return (
                "not measured: its exactly-once count ran at ~2,000 records/s here (below the "
                "failover load) and its changelog recovery hung in the restore trials"
            )
        return None


class Ours(Contender):
    name = "ours"
    count_format = "long"

    def job(
        self,
        bootstrap: str,
        source: str,
        sink: str,
        app_id: str,
        workload: str,
        guarantee: str,
        state_dir: Path,
        workers: int,
        table: str = "",
    ) -> Job:
        env = base_env()
        env.update(BENCH_INPUT=source, BENCH_OUTPUT=sink, BENCH_WORKLOAD=workload)
        if table:
            env["BENCH_TABLE"] = table
        command = self._command(
            bootstrap,
            app_id,
            state_dir,
            guarantee,
            commit_interval_ms=1000,
            log_level=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            extra=["--workers", str(workers)],
        )
        return Job([command], env)

    @staticmethod
    def _command(
        bootstrap: str,
        app_id: str,
        state_dir: Path,
        guarantee: str,
        *,
        commit_interval_ms: int,
        log_level: str,
        extra: list[str],
    ) -> list[str]:
        """`processor run` of bench/contenders/ours_topology.py. The HTTP server runs on any
        free port (the default), as it would in production."""
        return [
            sys.executable,
            "-m",
            "processor.cli",
            "run",
            "bench.contenders.ours_topology",
            "--bootstrap-servers",
            bootstrap,
            "--application-id",
            app_id,
            "--state-dir",
            str(state_dir),
            "--processing-guarantee",
            guarantee,
            "--commit-interval-ms",
            str(commit_interval_ms),
            "--http-port",
            "0",
            "--log-level",
            log_level,
            *extra,
        ]

    def failover_job(
        self, bootstrap: str, source: str, sink: str, app_id: str, state_dir: Path, standbys: int
    ) -> Job:
        env = base_env()
        env.update(BENCH_INPUT=source, BENCH_OUTPUT=sink, BENCH_WORKLOAD="count")
        kafka = [a for k, v in FAILOVER_KAFKA.items() for a in ("--kafka", f"{k}={v}")]
        commands = [
            self._command(
                bootstrap,
                app_id,
                state_dir / f"worker-{index}",
                "exactly_once",
                commit_interval_ms=FAILOVER_COMMIT_MS,
                log_level="INFO",  # for the "state restored" lines that `replayed` reads
                # its transaction timeout is 10 s already
                extra=["--num-standby-replicas", str(standbys), *kafka],
            )
            for index in range(FAILOVER_WORKERS)
        ]
        return Job(commands, env)

    def replayed(self, log: str) -> int | None:
        # processor/runtime/task_manager.py, as a task starts processing (after a restore, or a
        # standby's catch-up, or with nothing to read)
        return sum(int(n) for n in OURS_RESTORED.findall(log))


class KafkaStreams(Contender):
    name = "kafka-streams"
    count_format = "long"

    def unsupported(self, workload: str, workers: int) -> str | None:
        if workload in PROCESSING:
            return "not measured: Kafka Streams has punctuators, not per-key timers"
        return None

    def job(
        self,
        bootstrap: str,
        source: str,
        sink: str,
        app_id: str,
        workload: str,
        guarantee: str,
        state_dir: Path,
        workers: int,
        table: str = "",
    ) -> Job:
        classpath = kafka_streams_classpath()
        commands = [
            [
                "java",
                "-Xmx1g",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                f"-Dbench.table={table}",
                "-cp",
                classpath,
                "bench.StreamsBench",
                bootstrap,
                source,
                sink,
                app_id,
                workload,
                guarantee,
                str(state_dir / f"worker-{index}"),
            ]
            for index in range(workers)
        ]
        return Job(commands, base_env())

    def notes(self, workload: str) -> str:
        return "record cache on (its default): a count update per key per commit, not per record"

    def failover_job(
        self, bootstrap: str, source: str, sink: str, app_id: str, state_dir: Path, standbys: int
    ) -> Job:
        job = self.job(
            bootstrap, source, sink, app_id, "count", "exactly_once", state_dir, FAILOVER_WORKERS
        )
        settings = {
            **FAILOVER_KAFKA,  # unprefixed: for every consumer of the application
            "commit.interval.ms": str(FAILOVER_COMMIT_MS),
            # no record cache: an output per update, as the other contenders (the cache would
            # hold updates back until the commit anyway)
            "statestore.cache.max.bytes": "0",
            "transaction.timeout.ms": FAILOVER_TRANSACTION_MS,  # its exactly-once default
        }
        for command in job.commands:
            command += [str(standbys), *(f"{k}={v}" for k, v in settings.items())]
        return job

    def replayed(self, log: str) -> int | None:
        # StreamsBench's restore listener: an active task restored (a promoted standby restores
        # only what it lagged behind)
        return sum(int(n) for n in KS_RESTORED.findall(log))


OURS_RESTORED = re.compile(r"state restored in [\d.]+s \((\d+) changelog records read\)")
KS_RESTORED = re.compile(r"^restore end \S+ (\d+) records$", re.MULTILINE)


class OursBefore(Ours):
    """This project as checked out at $BENCH_BEFORE, run the same way as `ours`."""

    name = "ours-before"

    def job(self, *args: Any, **kwargs: Any) -> Job:
        job = super().job(*args, **kwargs)
        before = Path(os.environ["BENCH_BEFORE"])
        job.env["PYTHONPATH"] = str(before)
        job.cwd = before  # `python -m` puts the working directory first on sys.path
        return job


CONTENDERS: dict[str, Contender] = {
    c.name: c for c in (RawLoop(), OursBefore(), Ours(), Quix(), Faust(), KafkaStreams())
}
ORDER = ["raw", "ours-before", "ours", "quix", "faust", "kafka-streams"]


# --- input and output -------------------------------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(
    bootstrap: str, topic: str, partitions: int = PARTITIONS, config: dict[str, str] | None = None
) -> None:
    client = admin(bootstrap)  # referenced until its futures are done
    for future in client.create_topics(
        [NewTopic(topic, partitions, 1, config=config or {})]
    ).values():
        future.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until every partition has its leader
        meta = client.list_topics(topic, timeout=10).topics.get(topic)
        if (
            meta
            and len(meta.partitions) == partitions
            and not meta.error
            and all(p.leader >= 0 for p in meta.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise RunFailed(f"topic {topic} has no leaders after 30 s")


def delete_topics_of(bootstrap: str, *names: str, containing: str | None = None) -> None:
    """Delete `names` and every topic whose name contains `containing` (a run's app id)."""
    client = admin(bootstrap)
    topics = set(names)
    if containing:
        topics |= {t for t in client.list_topics(timeout=10).topics if containing in t}
    if topics:
        for future in client.delete_topics(sorted(topics)).values():
            with contextlib.suppress(Exception):
                future.result(30)


def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes, bytes, int | None]],
    timestamps: Sequence[int] | None = None,
) -> None:
    """Produce `records` (key, value, partition or None for the key's), in order; with
    `timestamps`, record i gets the timestamp timestamps[i] (else the producer's clock)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20})
    for index, (key, value, partition) in enumerate(records):
        stamp = 0 if timestamps is None else timestamps[index]  # 0: the producer's clock
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key, timestamp=stamp)
                else:
                    producer.produce(topic, value, key, partition, timestamp=stamp)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RunFailed("producing the input did not finish")


def checksum(key: bytes, value: bytes) -> int:
    return zlib.crc32(value, zlib.crc32(key + b"\0"))


@dataclasses.dataclass
class Input:
    topic: str
    records: int
    keys: list[bytes]  # the key of record i
    truth: Counter[bytes]  # records per key
    stateless_expected: int  # outputs of the stateless workload
    stateless_checksum: int  # sum of checksum(key, value) over them
    window_truth: Counter[bytes]  # records per b"<key>@<window start ms>" (count-window)
    windows: int  # the 60 s windows the timestamps span
    sums: dict[bytes, int]  # per key, the sum of its records' numbers (process)


def input_timestamps(records: int, windows: int, now_ms: int) -> list[int]:
    """Record i's timestamp: rising evenly, in record order, over `windows` windows of
    WINDOW_SIZE_MS that end at the last window boundary before `now_ms`. So each partition is in
    timestamp order (nothing is late, whatever the grace), every run of a count-window workload
    sees the windows roll over one after the other, and every timestamp is in the recent past
    (the broker takes it, and no retention deletes it)."""
    span = windows * WINDOW_SIZE_MS
    first = now_ms // WINDOW_SIZE_MS * WINDOW_SIZE_MS - span
    return [first + i * span // records for i in range(records)]


def make_input(bootstrap: str, records: int, keys: int, windows: int = WINDOWS) -> Input:
    rng = random.Random(SEED)
    key_of = [b"k%d" % rng.randrange(keys) for _ in range(records)]
    stamps = input_timestamps(records, windows, int(time.time() * 1000))
    topic = f"bench-input-{records}-{keys}-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic)
    started = time.monotonic()
    produce(bootstrap, topic, [(k, b"%d" % i, None) for i, k in enumerate(key_of)], stamps)
    window_truth = Counter(
        b"%s@%d" % (key, stamp - stamp % WINDOW_SIZE_MS)
        for key, stamp in zip(key_of, stamps, strict=True)
    )
    progress(
        f"input: {records:,} records over {len(set(key_of)):,} keys in {topic} "
        f"({time.monotonic() - started:.1f} s to produce); timestamps over {windows} windows of "
        f"{WINDOW_SIZE_MS // 1000} s: {len(window_truth):,} (key, window) pairs"
    )
    expected = 0
    total = 0
    for i, key in enumerate(key_of):
        if i % 4:
            expected += 1
            total += checksum(key, b"%d" % (2 * i))
    sums: dict[bytes, int] = {}
    for i, key in enumerate(key_of):
        sums[key] = sums.get(key, 0) + i
    return Input(
        topic, records, key_of, Counter(key_of), expected, total, window_truth, windows, sums
    )


def read_back(bootstrap: str, data: Input) -> list[list[tuple[int, int]]]:
    """Per partition of the input, (record number, timestamp) of each record in offset order,
    as the producer's partitioner placed them and the broker keeps them."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-read-back-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 << 20,
            "max.partition.fetch.bytes": 8 << 20,
        }
    )
    consumer.assign([TopicPartition(data.topic, p, 0) for p in range(PARTITIONS)])
    found: list[list[tuple[int, int, int]]] = [[] for _ in range(PARTITIONS)]
    read = 0
    deadline = time.monotonic() + 300
    try:
        while read < data.records:
            if time.monotonic() > deadline:
                raise RunFailed(f"read back {read:,} of {data.records:,} input records")
            for message in consumer.consume(20000, 0.5):
                if message.error():
                    raise RunFailed(f"reading the input back: {message.error()}")
                found[message.partition()].append(
                    (message.offset(), int(message.value()), message.timestamp()[1])
                )
                read += 1
    finally:
        consumer.close()
    return [[(number, stamp) for _, number, stamp in sorted(part)] for part in found]


def expected_firings(data: Input, partitions: list[list[tuple[int, int]]]) -> dict[bytes, int]:
    """The process-timers model: per partition in offset order, stream time is the largest
    timestamp so far; a record sets its key's timer to its timestamp + TIMER_DELAY_MS (replacing
    the key's timer), then every timer due by the stream time fires, by time then key, with the
    key's sum then. Returns b"<key>@<at_ms>" -> that sum, for every firing."""
    fired: dict[bytes, int] = {}
    keys = data.keys
    for records in partitions:
        now = -1
        sums: dict[bytes, int] = {}
        pending: dict[bytes, int] = {}
        heap: list[tuple[int, bytes]] = []
        for number, stamp in records:
            key = keys[number]
            sums[key] = sums.get(key, 0) + number
            now = max(now, stamp)
            pending[key] = stamp + TIMER_DELAY_MS
            heapq.heappush(heap, (stamp + TIMER_DELAY_MS, key))
            while heap and heap[0][0] <= now:
                at, due = heapq.heappop(heap)
                if pending.get(due) == at:
                    del pending[due]
                    fired[b"%s@%d" % (due, at)] = sums[due]
    return fired


@dataclasses.dataclass
class JoinInput:
    """The join workloads' input. Customer `c<n>` (n < customers) is in partition n % 6 of the
    table topic, with the JSON value `customer(n)`; order i asks for customer `c<want[i]>`,
    where want[i] < customers * (1 + 1/JOIN_MISSING_EVERY) (so about one order in
    JOIN_MISSING_EVERY finds no customer), is in partition want[i] % 6 of its topic (co-partitioned
    with the table) and has the JSON value `order(i)`."""

    table: str
    customers: int
    orders: int
    want: list[int]
    rows: list[Any]  # the customer of c<n> as the joined output holds it: a dict, or None

    @staticmethod
    def customer(n: int) -> dict[str, Any]:
        return {"id": n, "name": f"customer {n}", "city": f"city {n % 97}", "tier": n % 3}

    @staticmethod
    def order(i: int) -> bytes:
        return b'{"order":%d,"amount":%d}' % (i, i * 37 % 10_000)

    def last_key(self, partition: int) -> int:
        """The customer written last to `partition` of the table (the probe's customer)."""
        last = self.customers - 1
        return last - (last - partition) % PARTITIONS


def make_join_input(bootstrap: str, orders: int, customers: int) -> JoinInput:
    rng = random.Random(SEED + 17)
    ids = customers + customers // JOIN_MISSING_EVERY
    want = [rng.randrange(ids) for _ in range(orders)]
    topic = f"bench-customers-{customers}-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, config={"cleanup.policy": "compact"})
    rows: list[Any] = [JoinInput.customer(n) for n in range(customers)]
    produce(
        bootstrap,
        topic,
        [
            (b"c%d" % n, json.dumps(row, separators=(",", ":")).encode(), n % PARTITIONS)
            for n, row in enumerate(rows)
        ],
    )
    rows += [None] * (ids - customers)
    found = sum(n < customers for n in want)
    progress(
        f"join input: {customers:,} customers in {topic}; {orders:,} orders to come per run, "
        f"{found:,} of them for a customer in the table"
    )
    return JoinInput(topic, customers, orders, want, rows)


def produce_orders(bootstrap: str, topic: str, data: JoinInput) -> None:
    """Produce the orders, in order, each to its customer's partition number."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20})
    order = JoinInput.order
    for i, n in enumerate(data.want):
        while True:
            try:
                producer.produce(topic, order(i), b"c%d" % n, n % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RunFailed("producing the orders did not finish")


_LONG = struct.Struct(">q")


def decode_count(key: bytes, value: bytes, long: bool) -> int:
    """A count output's value: an 8-byte big-endian long, or decimal text (`long=False`)."""
    try:
        count: int = _LONG.unpack(value)[0] if long else int(value)
    except (TypeError, ValueError, struct.error):
        raise RunFailed(f"output count {value!r} of {key!r} is not a count") from None
    return count


class Reader:
    """Reads a sink (read_committed) from given offsets, checking each output as it comes."""

    def __init__(self, bootstrap: str, topic: str, start: dict[int, int] | None = None) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "fetch.max.bytes": 64 << 20,
                "max.partition.fetch.bytes": 8 << 20,
            }
        )
        offsets = start or {}
        self.consumer.assign(
            [TopicPartition(topic, p, offsets.get(p, 0)) for p in range(PARTITIONS)]
        )
        self.read = 0

    def batch(self, timeout: float = 0.2) -> list[Any]:
        messages = self.consumer.consume(20000, timeout)
        for message in messages:
            if message.error():
                raise RunFailed(f"reading the output: {message.error()}")
        self.read += len(messages)
        return messages

    def close(self) -> None:
        self.consumer.close()


class Check:
    """The correctness check of one workload; `take` sees every output, in order."""

    expected = 0
    done = 0

    def take(self, messages: list[Any]) -> None:
        raise NotImplementedError

    def finish(self) -> dict[str, Any]:
        """Raise RunFailed when the outputs are wrong; return what to report."""
        raise NotImplementedError


class StatelessCheck(Check):
    def __init__(self, data: Input, tolerate_duplicates: bool) -> None:
        self.keys = data.keys
        self.expected = data.stateless_expected
        self.wanted_checksum = data.stateless_checksum
        self.seen = bytearray(data.records)
        self.duplicates = 0
        self.checksum = 0
        self.tolerate = tolerate_duplicates

    def take(self, messages: list[Any]) -> None:
        keys, seen = self.keys, self.seen
        for message in messages:
            value, key = message.value(), message.key()
            try:
                doubled = int(value)
            except (TypeError, ValueError):
                raise RunFailed(f"output value {value!r} is not a number") from None
            number = doubled >> 1
            if doubled & 1 or not 0 <= number < len(keys) or number % 4 == 0:
                raise RunFailed(f"unexpected output {key!r}={value!r}")
            if keys[number] != key:
                raise RunFailed(f"output {value!r} has key {key!r}, not {keys[number]!r}")
            if seen[number]:
                self.duplicates += 1
            else:
                seen[number] = 1
                self.done += 1
                self.checksum += checksum(key, value)

    def finish(self) -> dict[str, Any]:
        if self.done != self.expected:
            raise RunFailed(f"{self.done:,} of {self.expected:,} expected outputs")
        if self.checksum != self.wanted_checksum:
            raise RunFailed("the checksum of the outputs is wrong")
        if self.duplicates and not self.tolerate:
            raise RunFailed(f"{self.duplicates:,} duplicated outputs")
        return {"outputs": self.done + self.duplicates, "duplicates": self.duplicates}


class CountCheck(Check):
    def __init__(self, truth: Counter[bytes], count_format: str, tolerate_over: bool) -> None:
        self.truth = truth
        self.expected = len(truth)
        self.latest: dict[bytes, int] = {}
        self.long = count_format == "long"
        self.tolerate = tolerate_over

    def take(self, messages: list[Any]) -> None:
        truth, latest = self.truth, self.latest
        for message in messages:
            key, value = message.key(), message.value()
            count = decode_count(key, value, self.long)
            want = truth.get(key)
            if want is None:
                raise RunFailed(f"output for unknown key {key!r}")
            before = latest.get(key, 0)
            if count >= want > before:
                self.done += 1
            latest[key] = count

    def finish(self) -> dict[str, Any]:
        short = [k for k, n in self.truth.items() if self.latest.get(k, 0) < n]
        over = [k for k, n in self.truth.items() if self.latest.get(k, 0) > n]
        if short:
            raise RunFailed(
                f"{len(short):,} keys short, e.g. {short[0]!r}: "
                f"{self.latest.get(short[0], 0)} of {self.truth[short[0]]}"
            )
        if over and not self.tolerate:
            raise RunFailed(
                f"{len(over):,} keys over-counted, e.g. {over[0]!r}: "
                f"{self.latest[over[0]]} for {self.truth[over[0]]}"
            )
        return {"over_counted_keys": len(over)}


class ProcessCheck(Check):
    """process: every key's last sum equals the truth. process-timers: also every expected
    firing (an output keyed `<key>@<at_ms>`) arrives once with the key's sum then, and no
    other. Under at-least-once with two workers, over-summed keys and extra, repeated or
    differing firings are allowed (a rebalance may replay records) and reported."""

    def __init__(self, sums: dict[bytes, int], firings: dict[bytes, int], tolerate: bool) -> None:
        self.sums = sums
        self.firings = firings
        self.expected = len(sums) + len(firings)
        self.latest: dict[bytes, int] = {}
        self.fired: set[bytes] = set()
        self.tolerate = tolerate
        self.extra = self.repeated = self.differing = 0

    def take(self, messages: list[Any]) -> None:
        sums, latest, firings, fired = self.sums, self.latest, self.firings, self.fired
        for message in messages:
            key, value = message.key(), message.value()
            total = decode_count(key, value, True)
            if b"@" in key:
                want = firings.get(key)
                if want is None:
                    self.extra += 1
                    if not self.tolerate:
                        raise RunFailed(f"unexpected firing {key!r} (value {total})")
                elif key in fired:
                    self.repeated += 1
                    if not self.tolerate:
                        raise RunFailed(f"firing {key!r} came twice")
                else:
                    fired.add(key)
                    self.done += 1
                    if total != want:
                        self.differing += 1
                        if not self.tolerate:
                            raise RunFailed(f"firing {key!r} carries {total}, not {want}")
                continue
            want = sums.get(key)
            if want is None:
                raise RunFailed(f"output for unknown key {key!r}")
            before = latest.get(key)
            if total >= want and (before is None or before < want):
                self.done += 1
            latest[key] = total

    def finish(self) -> dict[str, Any]:
        short = [k for k, n in self.sums.items() if self.latest.get(k, -1) < n]
        over = [k for k, n in self.sums.items() if self.latest.get(k, -1) > n]
        if short:
            raise RunFailed(
                f"{len(short):,} keys short, e.g. {short[0]!r}: "
                f"{self.latest.get(short[0])} of {self.sums[short[0]]}"
            )
        if over and not self.tolerate:
            raise RunFailed(
                f"{len(over):,} keys over-summed, e.g. {over[0]!r}: "
                f"{self.latest[over[0]]} for {self.sums[over[0]]}"
            )
        missing = len(self.firings) - len(self.fired)
        if missing:
            raise RunFailed(f"{missing:,} of {len(self.firings):,} firings missing")
        return {
            "firings": len(self.fired),
            "over_counted_keys": len(over),
            "extra_firings": self.extra,
            "repeated_firings": self.repeated,
            "differing_firings": self.differing,
        }


class JoinCheck(Check):
    """join: every order comes once, under its customer's key, as
    `{"order": i, "amount": ..., "customer": <the customer's value, or null>}` (checked whole,
    after JSON decoding: every contender's JSON text differs in spacing and key order). Probe
    outputs (negative order numbers, from loading the table) are skipped. Under at-least-once
    with two workers, repeated orders are allowed and reported."""

    def __init__(self, data: JoinInput, tolerate_duplicates: bool) -> None:
        self.data = data
        self.expected = data.orders
        self.seen = bytearray(data.orders)
        self.tolerate = tolerate_duplicates
        self.duplicates = self.probes = self.unmatched = 0

    def take(self, messages: list[Any]) -> None:
        want, rows, seen, loads = self.data.want, self.data.rows, self.seen, json.loads
        for message in messages:
            key, value = message.key(), message.value()
            try:
                joined = loads(value)
                number = joined["order"]
            except (TypeError, ValueError, KeyError):
                raise RunFailed(f"output {key!r}={value!r} is not a joined order") from None
            if number < 0:
                self.probes += 1
                continue
            if not 0 <= number < len(seen):
                raise RunFailed(f"output for unknown order {key!r}={value!r}")
            if seen[number]:
                self.duplicates += 1
                if not self.tolerate:
                    raise RunFailed(f"order {number} came twice")
                continue
            n = want[number]
            expected = {"order": number, "amount": number * 37 % 10_000, "customer": rows[n]}
            if key != b"c%d" % n or joined != expected:
                raise RunFailed(
                    f"order {number}: {key!r}={value!r}, expected c{n}={json.dumps(expected)}"
                )
            seen[number] = 1
            self.done += 1
            self.unmatched += rows[n] is None

    def finish(self) -> dict[str, Any]:
        if self.done != self.expected:
            raise RunFailed(f"{self.done:,} of {self.expected:,} orders joined")
        return {
            "joined_with_none": self.unmatched,
            "duplicates": self.duplicates,
            "probe_outputs": self.probes,
        }


# --- one run ----------------------------------------------------------------------------------


class Processes:
    """The OS processes of one run, each in its own session (so a worker's children stop too)."""

    def __init__(self, job: Job, logdir: Path) -> None:
        self.logs: list[Path] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        for index, command in enumerate(job.commands):
            log = logdir / f"worker-{index}.log"
            self.logs.append(log)
            with open(log, "ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        command,
                        cwd=job.cwd,
                        env=job.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def kill(self, index: int) -> None:
        """SIGKILL worker `index` and whatever it started (its session)."""
        self.killed.add(index)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[index].pid, signal.SIGKILL)

    def check(self) -> None:
        for index, proc in enumerate(self.procs):
            if index not in self.killed and proc.poll() is not None:
                raise RunFailed(
                    f"worker {index} exited with {proc.returncode}: {self.error_line(index)}"
                )

    def lines(self, index: int) -> list[str]:
        """The worker's log lines, without colour codes, timestamps, pids and table pipes."""
        lines = []
        for line in self.logs[index].read_text(errors="replace").splitlines():
            line = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", line)
            line = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip()).lstrip(": ")  # [date] [pid]
            if line:
                lines.append(line.replace("|", "/")[:240])
        return lines

    def error_line(self, index: int) -> str:
        lines = self.lines(index)
        for line in reversed(lines):  # a traceback's last line first: "SomeError: message"
            if re.match(r"[\w.]*(Error|Exception|Exit)\b.*:", line):
                return line
        for line in reversed(lines):
            if re.search(r"error|exception|refused|unsupported", line, re.IGNORECASE):
                return line
        return lines[-1] if lines else "(no output)"

    def last_line(self) -> str:
        for index in range(len(self.logs)):
            lines = self.lines(index)
            if lines:
                return lines[-1]
        return "(none)"

    def tail(self, lines: int = 25) -> str:
        parts = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for proc in self.procs:  # anything a worker left in its session
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


class Committed:
    """How many input records the application's group has committed: the run's progress."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        self.partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def records(self) -> int:
        try:
            offsets = self.consumer.committed(self.partitions, timeout=5)
        except confluent_kafka.KafkaException:
            return 0
        return sum(max(0, tp.offset) for tp in offsets)

    def close(self) -> None:
        self.consumer.close()


def run_once(
    *,
    bootstrap: str,
    contender: Contender,
    source: str,
    sink: str,
    app_id: str,
    workload: str,
    guarantee: str,
    workers: int,
    check: Check,
    state_dir: Path,
    logdir: Path,
    timeout: float,
    label: str,
    records: int = 0,
    start_offsets: dict[int, int] | None = None,
    table: str = "",
) -> tuple[float, dict[str, Any]]:
    """Start the contender, read until `check` has every expected output, check, stop; return
    the seconds from the start until the last expected output was read, and what the check
    reports.

    With `records` (the input's size), the group's committed input offsets are watched: a run
    projected past `timeout` after a minute is stopped as too slow, and one that has committed
    all its input but still lacks outputs ALL_COMMITTED_GRACE_S later fails."""
    state_dir.mkdir(parents=True, exist_ok=True)
    job = contender.job(
        bootstrap, source, sink, app_id, workload, guarantee, state_dir, workers, table=table
    )
    reader = Reader(bootstrap, sink, start_offsets)
    committed = Committed(bootstrap, app_id, source)
    tty = sys.stderr.isatty()
    procs: Processes | None = None
    try:
        started = time.monotonic()
        procs = Processes(job, logdir)
        next_report = started + 5
        next_look = started + 2
        all_committed_at: float | None = None  # when the group had committed all the input
        done_then = 0
        while check.done < check.expected:
            procs.check()
            check.take(reader.batch())
            now = time.monotonic()
            elapsed = now - started
            if elapsed > timeout:
                raise RunFailed(
                    f"did not finish in {timeout:.0f} s ({check.done:,} of "
                    f"{check.expected:,} outputs final); last log line: {procs.last_line()}"
                )
            if records and now >= next_look:  # the group's progress, every 2 s
                next_look = now + 2
                committed_records = committed.records()
                if committed_records < records or check.done != done_then:
                    all_committed_at, done_then = None, check.done
                elif all_committed_at is None:
                    all_committed_at = now
                elif now - all_committed_at > ALL_COMMITTED_GRACE_S:
                    raise RunFailed(
                        f"all input committed, yet {check.done:,} of {check.expected:,} "
                        f"outputs final and none more for {ALL_COMMITTED_GRACE_S:.0f} s"
                    )
                if (
                    elapsed > 60
                    and committed_records
                    and elapsed * records / committed_records > timeout * 1.2
                ):
                    raise TooSlow(
                        f"stopped: would not finish in {timeout:.0f} s; {committed_records:,} "
                        f"of {records:,} input records committed after {elapsed:.0f} s",
                        committed_records / elapsed,
                    )
            if now < next_report:
                continue
            next_report = now + (2 if tty else 10)
            line = (
                f"  {label}: {reader.read:,} outputs read, {check.done:,} of "
                f"{check.expected:,} final ({100 * check.done / check.expected:.0f}%)"
            )
            if records:
                line += f", input committed {100 * committed.records() / records:.0f}%"
            line += f", {elapsed:.0f} s"
            print(("\r\033[K" + line) if tty else line, end="" if tty else "\n", file=sys.stderr)
        seconds = time.monotonic() - started
        if tty:
            print("\r\033[K", end="", file=sys.stderr)
        settle = time.monotonic() + SETTLE_S
        while time.monotonic() < settle:
            check.take(reader.batch(0.1))
        details = check.finish()
        details["outputs_read"] = reader.read
        return seconds, details
    except RunFailed as failure:
        if tty:
            print(file=sys.stderr)
        if procs is not None:
            progress(f"  {label} FAILED: {failure}\n{procs.tail()}")
        raise
    finally:
        reader.close()
        committed.close()
        if procs is not None:
            procs.stop()


# --- workloads --------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    workload: str
    workers: int
    contender: str
    status: str  # ok, n/a, failed, too slow
    rates: list[float] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)
    reason: str = ""
    notes: str = ""
    details: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    unit: str = "records/s"
    approx_rate: float = 0.0  # too slow: committed input records per second when stopped


class Bench:
    def __init__(self, args: argparse.Namespace, bootstrap: str, workdir: Path) -> None:
        self.args = args
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.cells: list[Cell] = []
        self._input: Input | None = None
        self._firings: dict[bytes, int] | None = None
        self._join_input: JoinInput | None = None

    def skipped(self, contender: str, workload: str) -> str:
        """The reason `--skip contender:workload` gives, or ""."""
        if f"{contender}:{workload}" in self.args.skip:
            return f"not run this time (--skip): {self.args.skip_reason}"
        return ""

    def data(self) -> Input:
        if self._input is None:
            self._input = make_input(
                self.bootstrap, self.args.records, self.args.keys, self.args.windows
            )
        return self._input

    def join_data(self) -> JoinInput:
        if self._join_input is None:
            self._join_input = make_join_input(self.bootstrap, self.args.records, self.args.keys)
        return self._join_input

    def firings(self) -> dict[bytes, int]:
        """The process-timers workload's expected firings (computed once, untimed)."""
        if self._firings is None:
            data = self.data()
            started = time.monotonic()
            self._firings = expected_firings(data, read_back(self.bootstrap, data))
            progress(
                f"process-timers: {len(self._firings):,} firings expected from the input "
                f"({len(self._firings) / data.records:.2f} per record; read back and modelled "
                f"in {time.monotonic() - started:.1f} s)"
            )
        return self._firings

    def fresh(self, what: str) -> tuple[str, Path, Path]:
        suffix = uuid.uuid4().hex[:6]
        app_id = f"cmp-{what}-{suffix}"
        state = self.workdir / app_id / "state"
        logs = self.workdir / app_id / "logs"
        state.mkdir(parents=True)
        logs.mkdir(parents=True)
        return app_id, state, logs

    def throughput(self, name: str, contender: Contender, workers: int) -> Cell:
        program_workload, guarantee, _ = THROUGHPUT_WORKLOADS[name]
        cell = Cell(name, workers, contender.name, "ok", notes=contender.notes(program_workload))
        reason = contender.unsupported(name, workers)
        if reason:
            cell.status, cell.reason = "n/a", reason
            return cell
        if program_workload == JOIN_WORKLOAD:
            return self.join(cell, contender, guarantee, workers)
        data = self.data()
        tolerate = guarantee == "at_least_once" and workers > 1
        for run in range(self.args.runs):
            label = f"{contender.name} {name} x{workers} run {run + 1}/{self.args.runs}"
            app_id, state, logs = self.fresh(f"{contender.name}-{name}-{workers}")
            sink = f"{app_id}-out"
            create_topic(self.bootstrap, sink)
            check: Check
            if program_workload == "stateless":
                check = StatelessCheck(data, tolerate)
            elif program_workload == "count-window":
                check = CountCheck(data.window_truth, contender.count_format, tolerate)
            elif program_workload in PROCESS_WORKLOADS:
                timed = program_workload == "process-timers"
                check = ProcessCheck(data.sums, self.firings() if timed else {}, tolerate)
            else:
                check = CountCheck(data.truth, contender.count_format, tolerate)
            try:
                seconds, details = run_once(
                    bootstrap=self.bootstrap,
                    contender=contender,
                    source=data.topic,
                    sink=sink,
                    app_id=app_id,
                    workload=program_workload,
                    guarantee=guarantee,
                    workers=workers,
                    check=check,
                    state_dir=state,
                    logdir=logs,
                    timeout=self.args.timeout,
                    label=label,
                    records=data.records,
                )
            except TooSlow as slow:
                cell.status, cell.reason, cell.approx_rate = "too slow", str(slow), slow.rate
                return cell
            except RunFailed as failure:
                cell.status, cell.reason = "failed", str(failure)
                return cell
            finally:
                self.cleanup(app_id, sink)
            rate = data.records / seconds
            cell.rates.append(rate)
            cell.seconds.append(seconds)
            cell.details.append(details)
            extra = ", ".join(f"{k} {v:,}" for k, v in details.items() if v)
            progress(f"{label}: {rate:,.0f} records/s in {seconds:.1f} s; correct ({extra})")
        return cell

    def join(self, cell: Cell, contender: Contender, guarantee: str, workers: int) -> Cell:
        """The join workload, each run in two phases on one application id and state
        directory. Loading (not timed): the contender starts on the table and an order topic
        with no orders, is probed until it has the whole table (`load_table`), and is stopped.
        Then the orders are produced, and the timed run starts it again: from its start (group
        join, opening its local state) until every order's output is read."""
        data = self.join_data()
        tolerate = guarantee == "at_least_once" and workers > 1
        for run in range(self.args.runs):
            label = f"{contender.name} {cell.workload} x{workers} run {run + 1}/{self.args.runs}"
            app_id, state, logs = self.fresh(f"{contender.name}-{cell.workload}-{workers}")
            orders, sink = f"{app_id}-orders", f"{app_id}-out"
            try:
                create_topic(self.bootstrap, orders)
                create_topic(self.bootstrap, sink)
                loaded_s, rounds = self.load_table(
                    contender, data, orders, sink, app_id, guarantee, workers, state, logs, label
                )
                self.wait_group_empty(app_id, label)
                started = time.monotonic()
                produce_orders(self.bootstrap, orders, data)
                progress(
                    f"  {label}: table loaded in {loaded_s:.1f} s ({rounds} probe round"
                    f"{'s' * (rounds > 1)}), stopped; {data.orders:,} orders produced in "
                    f"{time.monotonic() - started:.1f} s"
                )
                seconds, details = run_once(
                    bootstrap=self.bootstrap,
                    contender=contender,
                    source=orders,
                    sink=sink,
                    app_id=app_id,
                    workload=JOIN_WORKLOAD,
                    guarantee=guarantee,
                    workers=workers,
                    check=JoinCheck(data, tolerate),
                    state_dir=state,
                    logdir=logs,
                    timeout=self.args.timeout,
                    label=label,
                    records=data.orders,
                    start_offsets=self.end_offsets(sink),
                    table=data.table,
                )
            except TooSlow as slow:
                cell.status, cell.reason, cell.approx_rate = "too slow", str(slow), slow.rate
                return cell
            except RunFailed as failure:
                cell.status, cell.reason = "failed", str(failure)
                return cell
            finally:
                self.cleanup(app_id, orders, sink)
            details["load_s"] = round(loaded_s, 1)
            rate = data.orders / seconds
            cell.rates.append(rate)
            cell.seconds.append(seconds)
            cell.details.append(details)
            extra = ", ".join(f"{k} {v:,}" for k, v in details.items() if v)
            progress(f"{label}: {rate:,.0f} records/s in {seconds:.1f} s; correct ({extra})")
        return cell

    def load_table(
        self,
        contender: Contender,
        data: JoinInput,
        orders: str,
        sink: str,
        app_id: str,
        guarantee: str,
        workers: int,
        state: Path,
        logs: Path,
        label: str,
    ) -> tuple[float, int]:
        """Start the contender on the table and the (empty) order topic, and probe it until it
        has loaded the whole table; stop it. Returns the seconds it took and the probe rounds.

        A probe is an order (negative number) for the customer written last to its partition of
        the table. Every contender reads a partition in offset order, so a probe joined with
        that customer's value proves the whole partition loaded. A probe joined with None (the
        contender read it before its table) is sent again after JOIN_PROBE_PAUSE_S, until every
        partition's probe finds its customer. The same for every contender: whether the table
        comes first is each one's own rule (ours and Kafka Streams: the lowest timestamp first;
        Quix Streams and the raw loop: whatever is fetched first)."""
        job = contender.job(
            self.bootstrap,
            orders,
            sink,
            app_id,
            JOIN_WORKLOAD,
            guarantee,
            state,
            workers,
            table=data.table,
        )
        reader = Reader(self.bootstrap, sink)
        procs = Processes(job, logs)
        started = time.monotonic()
        pending = set(range(PARTITIONS))
        rounds = 0
        try:
            while pending:
                sent = {-(1 + rounds * PARTITIONS + p): p for p in sorted(pending)}
                produce(
                    self.bootstrap,
                    orders,
                    [
                        (
                            b"c%d" % data.last_key(p),
                            b'{"order":%d,"amount":0}' % number,
                            p,
                        )
                        for number, p in sent.items()
                    ],
                )
                rounds += 1
                deadline = time.monotonic() + JOIN_LOAD_TIMEOUT_S
                while sent:
                    procs.check()
                    if time.monotonic() > deadline:
                        raise RunFailed(
                            f"loading the table: no output for probes {sorted(sent)} after "
                            f"{JOIN_LOAD_TIMEOUT_S:.0f} s; last log line: {procs.last_line()}"
                        )
                    for message in reader.batch():
                        joined = json.loads(message.value())
                        p = sent.pop(joined.get("order"), -1)
                        if p < 0:
                            continue  # an earlier round's probe
                        customer = joined.get("customer")
                        if customer == data.rows[data.last_key(p)]:
                            pending.discard(p)
                        elif customer is not None:
                            raise RunFailed(f"probe {message.key()!r} joined with {customer!r}")
                if pending:
                    time.sleep(JOIN_PROBE_PAUSE_S)
            return time.monotonic() - started, rounds
        except RunFailed as failure:
            progress(f"  {label} FAILED: {failure}\n{procs.tail()}")
            raise
        finally:
            reader.close()
            procs.stop()

    def cleanup(self, app_id: str, *topics: str) -> None:
        delete_topics_of(self.bootstrap, *topics, containing=app_id)
        if not self.args.keep:
            shutil.rmtree(self.workdir / app_id, ignore_errors=True)

    def restore(self, contender: Contender) -> Cell:
        keys = self.args.restore_keys
        cell = Cell("restore", 1, contender.name, "ok")
        reason = contender.unsupported("restore", 1) or self.skipped(contender.name, "restore")
        if reason:
            cell.status, cell.reason = "n/a", reason
            return cell
        app_id, state, logs = self.fresh(f"{contender.name}-restore")
        source, sink = f"{app_id}-in", f"{app_id}-out"
        phase = "while counting the keys to restore"
        try:
            create_topic(self.bootstrap, source)
            create_topic(self.bootstrap, sink)
            produce(self.bootstrap, source, [(b"r%d" % i, b"%d" % i, None) for i in range(keys)])
            progress(f"{contender.name} restore: counting {keys:,} distinct keys (not timed)")
            truth = Counter({b"r%d" % i: 1 for i in range(keys)})
            prepare = run_once(
                bootstrap=self.bootstrap,
                contender=contender,
                source=source,
                sink=sink,
                app_id=app_id,
                workload="count",
                guarantee="at_least_once",
                workers=1,
                check=CountCheck(truth, contender.count_format, tolerate_over=False),
                state_dir=state / "prepare",
                logdir=logs,
                label=f"{contender.name} restore: prepare",
                records=keys,
                timeout=max(self.args.timeout, PREPARE_TIMEOUT_S),
            )
            progress(f"{contender.name} restore: counted in {prepare[0]:.1f} s")
            phase = "while restoring"
            changelog = self.changelog_records(app_id, contender)
            if changelog < keys:
                raise RunFailed(f"the changelog has {changelog:,} records, fewer than {keys:,}")
            progress(f"{contender.name} restore: changelog holds {changelog:,} records")
            for run in range(self.args.runs):
                label = f"{contender.name} restore run {run + 1}/{self.args.runs}"
                self.wait_group_empty(app_id, label)
                markers = [(b"marker-%d-%d" % (run, p), b"0", p) for p in range(PARTITIONS)]
                start = self.end_offsets(sink)
                produce(self.bootstrap, source, markers)
                seconds, _ = run_once(
                    bootstrap=self.bootstrap,
                    contender=contender,
                    source=source,
                    sink=sink,
                    app_id=app_id,
                    workload="count",
                    guarantee="at_least_once",
                    workers=1,
                    check=CountCheck(
                        Counter({k: 1 for k, _, _ in markers}),
                        contender.count_format,
                        tolerate_over=False,
                    ),
                    state_dir=state / f"run-{run}",  # empty: everything comes from the changelog
                    logdir=logs,
                    timeout=self.args.restore_timeout,
                    label=label,
                    start_offsets=start,
                )
                rate = changelog / seconds
                cell.rates.append(rate)
                cell.seconds.append(seconds)
                cell.details.append({"changelog_records": changelog})
                progress(
                    f"{label}: {changelog:,} changelog records, processing again after "
                    f"{seconds:.1f} s: {rate:,.0f} records/s"
                )
        except RunFailed as failure:
            cell.status, cell.reason = "failed", f"{phase}: {failure}"
        finally:
            self.cleanup(app_id, source, sink)
        return cell

    def wait_group_empty(self, group: str, label: str) -> None:
        """Wait (untimed) until the previous run's members have left the group or expired, so
        that a restart is not timed waiting for a session timeout (Kafka Streams does not leave
        the group when it closes; its session timeout is 45 s)."""
        client = admin(self.bootstrap)
        deadline = time.monotonic() + 120
        waited = time.monotonic()
        while time.monotonic() < deadline:
            description = client.describe_consumer_groups([group])[group].result(10)
            if not description.members:
                break
            time.sleep(0.5)
        else:
            raise RunFailed(f"the group {group} still has members after 120 s")
        if time.monotonic() - waited > 1:
            progress(f"{label}: waited {time.monotonic() - waited:.0f} s for the group to empty")

    def changelog_records(self, app_id: str, contender: Contender) -> int:
        client = admin(self.bootstrap)
        topics = [
            t
            for t in client.list_topics(timeout=10).topics
            if app_id in t and contender.restore_changelog_marker in t
        ]
        if not topics:
            raise RunFailed(f"no changelog topic of {app_id} found")
        return sum(sum(self.end_offsets(t).values()) for t in topics)

    def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-offsets"})
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.partitions
            }
        finally:
            consumer.close()

    def restore_in_process(self) -> Cell:
        """Ours: bench/restore.py's changelog-to-RocksDB figure (no worker, no group join)."""
        from bench import restore as restore_bench
        from processor.state.rocksdb import open_rocksdb

        keys = self.args.restore_keys
        cell = Cell("restore-store", 1, "ours", "ok")
        topic = f"bench-restore-{uuid.uuid4().hex[:8]}-changelog"
        restore_bench.fill_changelog(self.bootstrap, topic, keys)
        try:
            for run in range(self.args.runs):
                path = self.workdir / f"restore-store-{run}"
                rate = restore_bench.restore(
                    self.bootstrap,
                    topic,
                    20_000,
                    open_rocksdb(path, [restore_bench.STORE]),
                    keys,
                )
                shutil.rmtree(path, ignore_errors=True)
                cell.rates.append(rate)
                progress(f"ours restore, in process, run {run + 1}/{self.args.runs}: {rate:,.0f}/s")
        finally:
            delete_topics_of(self.bootstrap, topic)
        return cell

    def failover(self, contender: Contender, standbys: int) -> Cell:
        name = f"failover-{standbys}sb"
        cell = Cell(name, FAILOVER_WORKERS, contender.name, "ok", unit="s")
        reason = contender.unsupported(name, FAILOVER_WORKERS)
        if reason:
            cell.status, cell.reason = "n/a", reason
            return cell
        for run in range(self.args.runs):
            label = f"{contender.name} failover, {standbys} standby, run {run + 1}/{self.args.runs}"
            try:
                details = self.failover_run(contender, standbys, label)
            except RunFailed as failure:
                cell.status, cell.reason = "failed", str(failure)
                return cell
            cell.seconds.append(details["failover_s"])
            cell.details.append(details)
            replayed = details["replayed"]
            progress(
                f"{label}: every hot key back after {details['failover_s']:.1f} s (written "
                f"{details['written_s']:.1f} s after the kill), "
                f"{details['stopped_keys']} of {FAILOVER_HOT_KEYS} keys stopped over "
                f"{FAILOVER_SLOW_S:g} s, "
                + (
                    "replayed n/a"
                    if replayed is None
                    else f"{replayed:,} changelog records replayed"
                )
                + f"; steady state: longest gap in a key's output {details['steady_gap_s']:.2f} s; "
                "counts exact"
            )
        return cell

    def failover_run(self, contender: Contender, standbys: int, label: str) -> dict[str, Any]:
        """One failover run (the scenario of the module docstring); returns its figures.

        Times are wall-clock (time.time()) so that they compare with the sink's LogAppendTime
        timestamps, written by the broker on this machine."""
        keys = self.args.failover_keys
        app_id, state, logs = self.fresh(f"{contender.name}-failover-{standbys}sb")
        source, sink = f"{app_id}-in", f"{app_id}-out"
        procs: Processes | None = None
        reader: Reader | None = None
        load: HotLoad | None = None
        phase = "while counting the keys"
        try:
            create_topic(self.bootstrap, source)
            # LogAppendTime: each output's timestamp is when the broker took it, whatever
            # timestamp the contender gives it (Kafka Streams keeps the input's).
            create_topic(self.bootstrap, sink, config={"message.timestamp.type": "LogAppendTime"})
            produce(self.bootstrap, source, [(b"r%d" % i, b"%d" % i, None) for i in range(keys)])
            job = contender.failover_job(self.bootstrap, source, sink, app_id, state, standbys)
            reader = Reader(self.bootstrap, sink)
            watch = FailoverWatch(contender.count_format)
            procs = Processes(job, logs)
            started = time.monotonic()
            progress(f"  {label}: {FAILOVER_WORKERS} workers counting {keys:,} keys (not timed)")
            next_report = started + 10
            while len(watch.prepared) < keys:
                procs.check()
                watch.take(reader.batch())
                now = time.monotonic()
                if now - started > PREPARE_TIMEOUT_S:
                    raise RunFailed(f"{len(watch.prepared):,} of {keys:,} keys counted")
                if now >= next_report:
                    next_report = now + 10
                    progress(f"  {label}: {len(watch.prepared):,} of {keys:,} keys counted")
            progress(f"  {label}: {keys:,} keys counted in {time.monotonic() - started:.1f} s")

            phase = "under the steady load"
            load = HotLoad(self.bootstrap, source, self.args.failover_rate)
            load.start()
            deadline = time.monotonic() + 60
            while len(watch.latest) < FAILOVER_HOT_KEYS:  # every task processes the load
                procs.check()
                load.check()
                watch.take(reader.batch(0.05))
                if time.monotonic() > deadline:
                    raise RunFailed(f"{len(watch.latest)} of {FAILOVER_HOT_KEYS} hot keys output")
            watch.steady_from = time.time()
            end = time.monotonic() + FAILOVER_STEADY_S
            while time.monotonic() < end:
                procs.check()
                load.check()
                watch.take(reader.batch(0.02))
            watch.steady_until = time.time()

            phase = "after the kill"
            sizes = [log.stat().st_size for log in procs.logs]
            progress(
                f"  {label}: {self.args.failover_rate:,.0f} records/s for "
                f"{FAILOVER_STEADY_S:.0f} s; SIGKILL worker {FAILOVER_VICTIM}"
            )
            watch.killed_at = time.time()
            procs.kill(FAILOVER_VICTIM)
            while len(watch.back) < FAILOVER_HOT_KEYS:
                procs.check()
                load.check()
                watch.take(reader.batch(0.02))  # receive times to within ~20 ms
                if time.time() - watch.killed_at > FAILOVER_TIMEOUT_S:
                    raise RunFailed(
                        f"{FAILOVER_HOT_KEYS - len(watch.back)} of {FAILOVER_HOT_KEYS} hot keys "
                        f"without output {FAILOVER_TIMEOUT_S:.0f} s after the kill"
                    )
            end = time.monotonic() + FAILOVER_AFTER_S
            while time.monotonic() < end:
                watch.take(reader.batch(0.05))
            truth = load.stop()

            phase = "checking the counts"
            deadline = time.monotonic() + FAILOVER_DRAIN_S
            while any(watch.latest.get(k, 0) < n for k, n in truth.items()):
                procs.check()
                watch.take(reader.batch())
                if time.monotonic() > deadline:
                    short = [k for k, n in truth.items() if watch.latest.get(k, 0) < n]
                    raise RunFailed(
                        f"{len(short)} hot keys short {FAILOVER_DRAIN_S:.0f} s after the load "
                        f"stopped, e.g. {short[0]!r}: {watch.latest.get(short[0], 0)} of "
                        f"{truth[short[0]]}"
                    )
            settle = time.monotonic() + SETTLE_S
            while time.monotonic() < settle:  # a late extra output still fails the run
                watch.take(reader.batch(0.1))
            over = [k for k, n in truth.items() if watch.latest[k] != n]
            if over:
                raise RunFailed(
                    f"{len(over)} hot keys over-counted, e.g. {over[0]!r}: "
                    f"{watch.latest[over[0]]} for {truth[over[0]]}"
                )
            survivors = "".join(
                log.read_bytes()[size:].decode(errors="replace")
                for index, (log, size) in enumerate(zip(procs.logs, sizes, strict=True))
                if index != FAILOVER_VICTIM
            )
            return {
                "failover_s": max(visible for visible, _ in watch.back.values()),
                "written_s": max(written for _, written in watch.back.values()),
                "stopped_keys": sum(v > FAILOVER_SLOW_S for v, _ in watch.back.values()),
                "replayed": contender.replayed(survivors),
                "steady_gap_s": watch.steady_gap,
                "outputs_read": reader.read,
            }
        except RunFailed as failure:
            progress(f"  {label} FAILED {phase}: {failure}")
            if procs is not None:
                progress(procs.tail())
            raise RunFailed(f"{phase}: {failure}") from None
        finally:
            if load is not None:
                load.halt()
            if reader is not None:
                reader.close()
            if procs is not None:
                procs.stop()
            self.cleanup(app_id, source, sink)


class HotLoad:
    """The failover workload's steady load, on a thread: FAILOVER_HOT_KEYS keys in turn at
    `rate` records/s, key h<i> always to partition i % PARTITIONS, so that every task has hot
    keys whichever worker runs it."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        self.bootstrap, self.topic, self.rate = bootstrap, topic, rate
        self.produced: Counter[bytes] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hot-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        if self.errors:
            raise RunFailed(f"producing the load: {self.errors[0]}")

    def stop(self) -> Counter[bytes]:
        """Stop, wait until every record is acknowledged; what was produced per key."""
        self.halt()
        self.check()
        if self._thread.is_alive():
            raise RunFailed("the load did not stop")
        return self.produced

    def halt(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(70)

    def _run(self) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "linger.ms": 5, "enable.idempotence": True}
        )

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                self.errors.append(str(error))

        keys = [b"h%d" % i for i in range(FAILOVER_HOT_KEYS)]
        sent = 0
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while sent < due:  # what is due now, then a short sleep: no sleep per record
                index = sent % len(keys)
                try:
                    producer.produce(
                        self.topic, b"%d" % sent, keys[index], index % PARTITIONS, delivered
                    )
                except BufferError:
                    producer.poll(0.05)
                    continue
                self.produced[keys[index]] += 1
                sent += 1
            producer.poll(0)
            time.sleep(0.005)
        if producer.flush(60):
            self.errors.append("records left unacknowledged after 60 s")


class FailoverWatch:
    """The failover workload's outputs: the prepared keys counted, each hot key's counts (each
    output must be the previous one plus one: exactly-once, an output per update), when each
    hot key was first back after the kill, and the longest gap in a hot key's output in the
    steady state before it."""

    def __init__(self, count_format: str) -> None:
        self.long = count_format == "long"
        self.prepared: set[bytes] = set()
        self.latest: dict[bytes, int] = {}
        self.last_seen: dict[bytes, float] = {}
        self.steady_from = self.steady_until = self.killed_at = 0.0
        self.steady_gap = 0.0
        # key -> (seconds from the kill until read, until written) of its first output written
        # after the kill
        self.back: dict[bytes, tuple[float, float]] = {}

    def take(self, messages: list[Any]) -> None:
        received = time.time()
        for message in messages:
            key, value = message.key(), message.value()
            count = decode_count(key, value, self.long)
            if key.startswith(b"r"):
                if count != 1 or key in self.prepared:
                    raise RunFailed(f"{key!r} counted {count} times; it was produced once")
                self.prepared.add(key)
                continue
            before = self.latest.get(key, 0)
            if count != before + 1:
                raise RunFailed(f"{key!r}: output count {count} after {before}")
            self.latest[key] = count
            if self.steady_from and not self.steady_until:
                since = max(self.last_seen.get(key, 0.0), self.steady_from)
                self.steady_gap = max(self.steady_gap, received - since)
            self.last_seen[key] = received
            if self.killed_at and key not in self.back:
                kind, stamp = message.timestamp()
                if kind != confluent_kafka.TIMESTAMP_LOG_APPEND_TIME:
                    raise RunFailed(f"the sink's timestamps are not LogAppendTime ({kind})")
                if stamp / 1000 > self.killed_at:
                    written = stamp / 1000 - self.killed_at
                    self.back[key] = (received - self.killed_at, written)


# --- report -----------------------------------------------------------------------------------


def command_output(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def machine() -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GB"
    os_name = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu or platform.processor(),
        "memory": memory,
        "os": os_name or platform.platform(),
    }


def versions(contenders: Sequence[str]) -> dict[str, str]:
    found = {
        "python": platform.python_version(),
        "confluent-kafka (ours, raw loop)": f"{importlib.metadata.version('confluent-kafka')} "
        f"(librdkafka {confluent_kafka.libversion()[0]})",
        "Apache Kafka broker": KAFKA_VERSION,
    }
    if {"quix", "faust"} & set(contenders):
        script = (
            "import importlib.metadata as m, confluent_kafka as c, platform;"
            "print(platform.python_version());"
            "print(m.version('quixstreams'), m.version('faust-streaming'), m.version('aiokafka'),"
            " m.version('confluent-kafka'), c.libversion()[0])"
        )
        out = command_output([str(contenders_python()), "-c", script]).split()
        if len(out) == 6:
            found["python (contenders' venv)"] = out[0]
            found["quixstreams"] = f"{out[1]} (confluent-kafka {out[4]}, librdkafka {out[5]})"
            found["faust-streaming"] = f"{out[2]} (aiokafka {out[3]})"
    if "kafka-streams" in contenders:
        jars = sorted((KS_BUILD / "lib").glob("kafka-streams-*.jar"))
        java = command_output(["java", "-version"]).splitlines()
        found["Kafka Streams"] = (jars[0].stem.removeprefix("kafka-streams-") if jars else "?") + (
            f" ({java[0]})" if java else ""
        )
    return found


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"[{fmt.format(min(values))}-{fmt.format(max(values))}]"
    )


def cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "not run"
    if cell.status == "n/a":
        return f"n/a: {cell.reason}"
    if cell.status == "failed":
        return f"failed: {cell.reason}"
    if cell.status == "too slow":
        return f"~{cell.approx_rate:,.0f}, unchecked ({cell.reason})"
    if cell.unit == "s":
        text = f"{spread(cell.seconds, '{:.1f}')} s"
        written = [d["written_s"] for d in cell.details if "written_s" in d]
        if written:
            text += f" (written {spread(written, '{:.1f}')} s)"
        replayed = [d["replayed"] for d in cell.details if d.get("replayed") is not None]
        return text + (f", {spread(replayed)} replayed" if replayed else ", replayed n/a")
    text = spread(cell.rates)
    over = sum(d.get("over_counted_keys", 0) for d in cell.details)
    dups = sum(d.get("duplicates", 0) for d in cell.details)
    if over:
        text += f" ({over:,} keys over-counted in all runs, none short)"
    if dups:
        text += f" ({dups:,} duplicated outputs in all runs)"
    return text


ROW_TITLES = {
    **{name: desc for name, (_, _, desc) in THROUGHPUT_WORKLOADS.items()},
    "restore": "restore {keys} keys, end to end (changelog records/s)",
    "restore-store": "restore {keys} keys, changelog to store only (records/s)",
    "failover-1sb": "failover, 1 standby: seconds until every key's output is back (written), "
    "changelog records replayed",
    "failover-0sb": "failover, no standby: seconds until every key's output is back (written), "
    "changelog records replayed",
}


def row_title(cell: Cell, meta: dict[str, Any]) -> str:
    title = ROW_TITLES[cell.workload].format(keys=f"{meta['restore_keys']:,}")
    if cell.workload in THROUGHPUT_WORKLOADS:
        title += f", {cell.workers} worker{'s' if cell.workers > 1 else ''}"
    return title


def ratio_lines(cells: list[Cell]) -> list[str]:
    def median(workload: str, workers: int, contender: str) -> float | None:
        for c in cells:
            if (c.workload, c.workers, c.contender) == (workload, workers, contender):
                return statistics.median(c.rates) if c.status == "ok" and c.rates else None
        return None

    lines = []

    def ratio(text: str, a: float | None, b: float | None, target: float | None) -> None:
        if a is None or b is None:
            lines.append(f"- {text}: not measured")
            return
        if target is None:
            lines.append(f"- {text}: {a / b:.2f}")
            return
        verdict = "met" if a / b >= target else "NOT met"
        lines.append(f"- {text}: {a / b:.2f} (target ≥ {target:g}: {verdict})")

    for workers in (1, 2):
        for workload in ("count-alos", "count-eos"):
            if median(workload, workers, "ours") is None:
                continue
            desc = f"{THROUGHPUT_WORKLOADS[workload][2]}, {workers} worker{'s' * (workers > 1)}"
            ours = median(workload, workers, "ours")
            ratio(f"ours / Quix Streams, {desc}", ours, median(workload, workers, "quix"), 2)
            ratio(f"ours / raw loop, {desc}", ours, median(workload, workers, "raw"), 0.6)
        if any(c.workload in ("count-alos", "count-eos") and c.workers == workers for c in cells):
            ratio(
                f"ours exactly-once / at-least-once, count, {workers} worker{'s' * (workers > 1)}",
                median("count-eos", workers, "ours"),
                median("count-alos", workers, "ours"),
                0.8,
            )
        for windowed, plain in (
            ("count-window-alos", "count-alos"),
            ("count-window-eos", "count-eos"),
        ):
            ours = median(windowed, workers, "ours")
            if ours is None:
                continue
            desc = f"{THROUGHPUT_WORKLOADS[windowed][2]}, {workers} worker{'s' * (workers > 1)}"
            ratio(
                f"ours windowed / ours plain count, {desc}",
                ours,
                median(plain, workers, "ours"),
                0.7,
            )
            ratio(f"ours / Quix Streams, {desc}", ours, median(windowed, workers, "quix"), 1)
        for timed, plain in (
            ("process-timers-alos", "process-alos"),
            ("process-timers-eos", "process-eos"),
        ):
            ours = median(timed, workers, "ours")
            if ours is None:
                continue
            desc = f"{THROUGHPUT_WORKLOADS[plain][2]}, {workers} worker{'s' * (workers > 1)}"
            ratio(
                f"ours with a timer per record / without, {desc}",
                ours,
                median(plain, workers, "ours"),
                0.5,
            )
        for workload in ("join-alos", "join-eos"):
            ours = median(workload, workers, "ours")
            if ours is None:
                continue
            desc = f"{THROUGHPUT_WORKLOADS[workload][2]}, {workers} worker{'s' * (workers > 1)}"
            ratio(
                f"ours / Quix Streams (join_asof), {desc}",
                ours,
                median(workload, workers, "quix"),
                2,
            )
            ratio(
                f"ours / Kafka Streams, {desc}",
                ours,
                median(workload, workers, "kafka-streams"),
                None,
            )
            ratio(f"ours / raw loop, {desc}", ours, median(workload, workers, "raw"), None)
    for workload, desc in (("restore", "end to end"), ("restore-store", "store only")):
        value = median(workload, 1, "ours")
        if value is not None:
            verdict = "met" if value >= 300_000 else "NOT met"
            lines.append(
                f"- ours restore, {desc}: {value:,.0f} records/s (target ≥ 300,000: {verdict})"
            )
    return lines


def markdown(meta: dict[str, Any], cells: list[Cell]) -> str:
    contenders = [c for c in ORDER if c in meta["contenders"]]
    m = meta["machine"]
    out = [
        START_MARK,
        "## Side by side (`bench/compare.py`)",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}. Machine: {m['cpus']} vCPU "
        f"({m['cpu']}), {m['memory']} RAM, {m['os']}; one Kafka broker on the same machine, "
        "shared by the contenders, the input producer and the output reader.",
        "",
        "Versions: " + "; ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        f"Input: {meta['records']:,} records over {meta['keys']:,} keys, {PARTITIONS} partitions "
        "(key `k<n>`, value the record's sequence number as text), produced once and read by "
        "every run"
        + (
            f"; record timestamps rising evenly over {meta['windows']} minutes, in record "
            "order, so the windowed counts see that many 60 s windows roll over"
            + (
                " and the timers set 60 s ahead fire in the course of the input"
                if set(PROCESSING) & set(meta["workloads"])
                else ""
            )
            if set(WINDOWED | PROCESSING) & set(meta["workloads"]) and "windows" in meta
            else ""
        )
        + ". Each cell: median [min-max] of "
        f"{meta['runs']} run{'s' if meta['runs'] > 1 else ''}, records per second from the first "
        "process start until the last "
        "expected output was read (read_committed), group join and start-up included. Commit "
        "interval 1 s for every contender and both guarantees. Every run is checked "
        "(stateless: every expected output, nothing else, checksum; count: every key's final "
        "count; windowed count: every (key, window)'s final count, and no output for a window "
        "without records; process: every key's final sum, and with timers every firing, exactly, "
        "against a model of the input); a failed check fails the cell.",
        "",
        "| workload | " + " | ".join(LABELS[c] for c in contenders) + " |",
        "| --- |" + " --- |" * len(contenders),
    ]
    rows: dict[tuple[str, int], dict[str, Cell]] = {}
    for cell in cells:
        rows.setdefault((cell.workload, cell.workers), {})[cell.contender] = cell
    for (_workload, _workers), by_contender in rows.items():
        first = next(iter(by_contender.values()))
        out.append(
            f"| {row_title(first, meta)} | "
            + " | ".join(
                cell_text(by_contender.get(c))
                if c in by_contender or _workload != "restore-store"
                else "(ours only)"
                for c in contenders
            )
            + " |"
        )
    out += ["", "Targets (issues 6, 15, 16 and 17):", "", *ratio_lines(cells), "", "Notes:", ""]
    notes = {
        "raw": "raw loop: " + RawLoop().notes("count") + "; it is the ceiling for one Python "
        "process, not a stream processor",
        "ours": "ours: `processor run bench.contenders.ours_topology`; count = "
        "`group_by_key().count()`, RocksDB store with changelog, an output per update",
        "ours-before": "ours-before: the same, run from the checkout at $BENCH_BEFORE",
        "quix": "Quix Streams: `Application` + `StreamingDataFrame`; count = stateful `apply` "
        "(RocksDB State with changelog), an output per update",
        "faust": "Faust: an agent; count = `Table` (rocksdb store via rocksdict, changelog), "
        "`send` per update",
        "kafka-streams": "Kafka Streams: `groupByKey().count()`, RocksDB, one stream thread per "
        "process; " + KafkaStreams().notes("count"),
    }
    if set(WINDOWED) & set(meta["workloads"]):
        notes["ours"] += (
            "; windowed count = `group_by_key().windowed_by(TumblingWindows(size_ms=60_000), "
            'emit="update").count()`, RocksDB window store with changelog, an output per update '
            "under `<key>@<window start>`"
        )
        notes["quix"] += (
            "; windowed count = `tumbling_window(60_000).count().current()` (an output per "
            "update), then an `apply` making the key `<key>@<window start>`"
        )
        notes["kafka-streams"] += (
            "; windowed count = `groupByKey().windowedBy(TimeWindows.ofSizeAndGrace(60 s, 0))"
            ".count()`, emitted on update through the record cache, then a `map` to "
            "`<key>@<window start>`"
        )
    if set(PROCESSING) & set(meta["workloads"]):
        notes["ours"] += (
            "; process = one `process()` operator: `sums.get`, `sums.put`, `forward` per record "
            "(RocksDB store with changelog); process with timers = the same plus "
            "`ctx.set_timer(ctx.timestamp + 60_000)` per record and an `on_timer` forwarding the "
            "key's sum (the timer store is RocksDB with changelog too)"
        )
        notes["raw"] += (
            "; process = the running sum in a dict; with timers, each partition's timers in a "
            "dict and a heap in memory (not persisted)"
        )
    if set(JOINING) & set(meta["workloads"]):
        notes["ours"] += (
            '; join = `orders.join(customers, enrich, how="left")` over a table source '
            "(RocksDB store) and JSON serdes"
        )
        notes["raw"] += (
            "; join = the table in a dict of parsed values, each order parsed and dumped"
        )
        notes["quix"] += (
            '; join = `join_asof(customers, how="left", on_merge=enrich)` (the customers '
            "kept per key and timestamp in a RocksDB store with changelog; an order reads its "
            "key's latest version at or before its timestamp)"
        )
        notes["kafka-streams"] += (
            "; join = `KStream.leftJoin(KTable)`, the joiner parsing both JSON values with Jackson"
        )
        if "faust" in notes:
            notes["faust"] += "; no joins"
    out += [f"- {notes[c]}." for c in contenders]
    if set(JOINING) & set(meta["workloads"]):
        out.append(
            f"- join: a compacted table topic of {meta['keys']:,} customers (`c<n>` in partition "
            f"n % 6, JSON values), loaded untimed: the contender starts on it and on an empty "
            "order topic and is sent one probe order per partition, for the customer written "
            "last to that partition, again every 0.5 s until each probe comes back joined with "
            "that customer (every contender reads a partition in offset order, so the whole "
            "table is loaded); then it is stopped, the orders are produced "
            f"({meta['records']:,}, each to its customer's partition, about one in "
            f"{JOIN_MISSING_EVERY} for a customer not in the table), and the timed run starts it "
            "again on its state directory: start-up and group join included, as in the other "
            "rows, the table load not. Every order's output is checked whole (key, order, "
            "customer or null)"
        )
    firings = [
        d["firings"] for c in cells if c.workload in PROCESSING for d in c.details if "firings" in d
    ]
    if firings:
        out.append(
            f"- process with timers: a timer fires when a key has had no record for 60 s of its "
            f"partition's stream time; this input gives {max(firings):,} firings (outputs besides "
            "the records' own), every one checked against a model of the input"
        )
    out += [
        "- restore: the contender's count application counted the keys once (not timed); each "
        "run starts it on an empty state directory with one new record per partition and is "
        "timed until all six outputs are read, so process start, group join and the first "
        "commit are included. `changelog to store only` is `bench/restore.py`'s in-process "
        "figure for ours.",
        "- `~N, unchecked (stopped: ...)`: the run was stopped after a minute because it would "
        f"not finish within {meta.get('timeout', 300):.0f} s; N is the input records the "
        "application had committed per second by then (`--timeout` gives it longer).",
        "- Kafka Streams does not leave its group on close: before each restore run the bench "
        "waits (untimed) until the previous member's session expired.",
        "- failover, the same for every contender: its count application in 3 worker processes, "
        "exactly-once, 6 s session timeout (heartbeat 0.5 s), commit interval 200 ms, 10 s "
        "transaction timeout (Kafka Streams: no record cache), first counts "
        f"{meta['failover_keys']:,} distinct keys (not timed: the state to fail over); then "
        f"{meta['failover_rate']:,.0f} records/s over {FAILOVER_HOT_KEYS} hot keys (every "
        f"partition) for {FAILOVER_STEADY_S:.0f} s; then one worker is SIGKILLed. Figure: the "
        "longest time over the hot keys from the kill until the key's first output written after "
        "it is read (read_committed); (written): until it was written, from the sink's "
        "LogAppendTime. Both include the session timeout; the first also includes how long the "
        "dead worker's open transaction holds back read_committed readers (ours fences the dead "
        "worker's transactional id when the group rebalances; Kafka Streams and Quix Streams "
        "leave it to the broker to abort after the transaction timeout). Replayed: changelog "
        "records the survivors restored after the kill, as they log it (ours: 'state restored', "
        "Kafka Streams: its restore listener); n/a where the contender does not say. Every run "
        "checks that each hot key's counts go up by one per output and end at what was "
        "produced, and that each prepared key was counted once.",
        "",
        "![compare](results/compare.png)",
        END_MARK,
    ]
    return "\n".join(out) + "\n"


def write_markdown(text: str) -> None:
    current = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    if START_MARK in current and END_MARK in current:
        before, rest = current.split(START_MARK, 1)
        after = rest.split(END_MARK, 1)[1]
        RESULTS_MD.write_text(before + text.rstrip("\n") + after)
    else:
        RESULTS_MD.write_text(current.rstrip("\n") + "\n\n" + text)


def chart(json_path: Path, png_path: Path) -> None:
    python = contenders_python()
    done = subprocess.run(
        [str(python), str(BENCH / "contenders" / "chart.py"), str(json_path), str(png_path)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        progress(f"the chart failed: {done.stderr.strip()[-500:]}")


# --- main -------------------------------------------------------------------------------------


def csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--contenders", type=csv, default=ALL_CONTENDERS)
    parser.add_argument("--workloads", type=csv, default=ALL_WORKLOADS)
    parser.add_argument("--workers", type=lambda v: [int(x) for x in csv(v)], default=[1, 2])
    parser.add_argument(
        "--windows",
        type=int,
        default=WINDOWS,
        help="the input's timestamps span this many 60 s windows (count-window workloads)",
    )
    parser.add_argument("--restore-keys", type=int, default=1_000_000)
    parser.add_argument(
        "--restore-timeout", type=float, default=180, help="seconds per restore run"
    )
    parser.add_argument("--failover-keys", type=int, default=1_000_000)
    parser.add_argument("--failover-rate", type=float, default=10_000)
    parser.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="seconds per run; a run whose committed input projects past it after a minute is "
        "stopped and reported as too slow, with its approximate rate",
    )
    parser.add_argument("--keep", action="store_true", help="keep state dirs and worker logs")
    parser.add_argument(
        "--skip",
        type=csv,
        default=[],
        help="contender:workload cells not to run (restore only), e.g. faust:restore",
    )
    parser.add_argument("--skip-reason", default="", help="why, for the table (with --skip)")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the results to this JSON file only, leaving RESULTS.md, compare.json and "
        "the PNG alone",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only rewrite RESULTS.md's section and the PNG from bench/results/compare.json",
    )
    args = parser.parse_args()
    if args.report_only:
        write_report()
        return
    for name in args.contenders:
        if name not in CONTENDERS:
            choices = ", ".join([*ALL_CONTENDERS, *OPTIONAL_CONTENDERS])
            parser.error(f"unknown contender {name}; choose from {choices}")
        if name == "ours-before" and not os.environ.get("BENCH_BEFORE"):
            parser.error("ours-before runs the checkout at $BENCH_BEFORE: set it")
    for name in args.workloads:
        if name not in ALL_WORKLOADS:
            parser.error(f"unknown workload {name}; choose from {', '.join(ALL_WORKLOADS)}")

    started = time.monotonic()
    # Set up every contender first, so a missing tool fails before anything is measured.
    if {"quix", "faust"} & set(args.contenders):
        contenders_python()
    if "kafka-streams" in args.contenders:
        kafka_streams_classpath()
    meta: dict[str, Any] = {
        "command": " ".join(["python -m bench.compare", *sys.argv[1:]]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "versions": versions(args.contenders),
        "records": args.records,
        "keys": args.keys,
        "windows": args.windows,
        "runs": args.runs,
        "contenders": args.contenders,
        "workloads": args.workloads,
        "workers": args.workers,
        "restore_keys": args.restore_keys,
        "failover_keys": args.failover_keys,
        "failover_rate": args.failover_rate,
        "timeout": args.timeout,
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    cells: list[Cell] = []
    try:
        with broker() as bootstrap:
            progress(f"broker {bootstrap}; work dir {workdir}")
            bench = Bench(args, bootstrap, workdir)
            order = [c for c in ORDER if c in args.contenders]
            for workload in [w for w in THROUGHPUT_WORKLOADS if w in args.workloads]:
                for workers in args.workers:
                    for name in order:
                        cells.append(bench.throughput(workload, CONTENDERS[name], workers))
                        report(cells[-1])
            if "restore" in args.workloads:
                for name in order:
                    cells.append(bench.restore(CONTENDERS[name]))
                    report(cells[-1])
                if "ours" in order:
                    cells.append(bench.restore_in_process())
                    report(cells[-1])
            if "failover" in args.workloads:
                for standbys in (1, 0):
                    for name in order:
                        cells.append(bench.failover(CONTENDERS[name], standbys))
                        report(cells[-1])
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    meta["minutes"] = round((time.monotonic() - started) / 60, 1)
    RESULTS_DIR.mkdir(exist_ok=True)
    json_path = args.json or JSON_PATH
    json_path.write_text(
        json.dumps(
            {
                "meta": meta,
                "cells": [dataclasses.asdict(c) for c in cells],
                "labels": LABELS,
                "titles": {f"{c.workload}/{c.workers}": row_title(c, meta) for c in cells},
            },
            indent=1,
        )
        + "\n"
    )
    if args.json is None:
        write_report()
    else:
        print(markdown(meta, cells))
        progress(f"wrote {json_path}")
    progress(f"done in {meta['minutes']} min")


def write_report() -> None:
    """RESULTS.md's section and the PNG from bench/results/compare.json."""
    saved = json.loads(JSON_PATH.read_text())
    cells = [Cell(**c) for c in saved["cells"]]
    write_markdown(markdown(saved["meta"], cells))
    chart(JSON_PATH, RESULTS_DIR / "compare.png")
    progress(
        f"wrote {RESULTS_MD.relative_to(ROOT)} (section), {JSON_PATH.relative_to(ROOT)}, "
        f"{(RESULTS_DIR / 'compare.png').relative_to(ROOT)}"
    )


def report(cell: Cell) -> None:
    progress(f"== {cell.contender} {cell.workload} x{cell.workers}: {cell_text(cell)}")


if __name__ == "__main__":
    main()
