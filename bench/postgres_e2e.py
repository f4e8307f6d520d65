"""The PostgreSQL sink end to end (issue 18): rows/s from a Kafka topic into a PostgreSQL table,
this project's `PostgresSink` (exactly-once and at-least-once) side by side with Quix Streams'
`PostgreSQLSink` and a plain confluent-kafka + psycopg COPY loop (the ceiling).

    .venv/bin/python -m bench.postgres_e2e [--records 1000000] [--runs 3]
        [--contenders ours-eos,ours-alos,quix,plain] [--timeout 600] [--no-results]
        [--profile DIR]

--records JSON records (`{"id": n, "name": "customer-<n % 997>", "amount": n * 0.25,
"qty": n % 50, "at": "<ISO 8601 timestamp with offset>"}`, key: n as text) are produced once
to a 6-partition topic. Then, for each run, alternating contenders (a, b, c, d, a, b, c, d,
...): a fresh database holding an empty table of those five columns (bigint, text, double
precision, integer, timestamptz; no index), a fresh application id / consumer group, and one
worker process of the contender, timed from its start until `select count(*)` (polled every
0.5 s) reaches --records; rows/s = records / seconds. The worker is then stopped and the table
checked: every id once (exactly-once: and nothing else; at-least-once: duplicates are counted
and allowed) and every row's five values equal to what was produced.

The contenders (programs in bench/contenders/):

- `ours-eos`: `processor run bench.contenders.pg_ours --processing-guarantee exactly_once`,
  the stream into `PostgresSink(mode="append")` (exactly-once: rows and offsets in one
  transaction per batch); the sink reads the topic itself (it follows the source directly).
- `ours-alos`: the same with `--processing-guarantee at_least_once` and
  `PostgresSink(exactly_once=False)`.
- `quix`: Quix Streams (`bench/contenders/pg_quix.py`) with its `PostgreSQLSink` (at-least-once,
  a transaction per checkpoint, every 5 s by default).
- `plain`: `bench/contenders/pg_plain.py`, confluent-kafka and psycopg 3 COPY, a transaction
  per 10,000 rows.

Quix Streams runs from `.cache/bench-contenders` (see `bench.compare`), and its PostgreSQL sink
needs psycopg2 there: `psycopg2-binary` is in `bench.compare.CONTENDERS_REQUIREMENTS`, so the venv
is created or completed with it when missing. It starts its own broker (`LocalBroker`, unless
PROCESSOR_TEST_BOOTSTRAP names one) and its own PostgreSQL (`LocalPostgres`). Results go to the
section of bench/RESULTS.md between the `postgres-e2e` markers (not with --no-results).
--profile DIR records a py-spy profile (raw, for flame graphs) of every ours run's worker into DIR
(py-spy slows the worker: such runs are for the profile, not for the table).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg.conninfo import conninfo_to_dict

from bench.compare import base_env, contenders_python
from processor.testing.broker import KAFKA_VERSION, LocalBroker
from processor.testing.postgres import LocalPostgres

ROOT = Path(__file__).resolve().parents[1]
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
START_MARK, END_MARK = "<!-- postgres-e2e:start -->", "<!-- postgres-e2e:end -->"
PARTITIONS = 6
TABLE = "bench_rows"
CREATE_TABLE = (
    f"CREATE TABLE {TABLE} (id bigint NOT NULL, name text NOT NULL, amount double precision, "
    "qty integer, at timestamptz)"
)
START = datetime(2026, 1, 1, tzinfo=UTC)
POLL_S = 0.5
PROGRESS_S = 5.0
STOP_TIMEOUT_S = 30.0

CONTENDERS = ["ours-eos", "ours-alos", "quix", "plain"]
LABELS = {
    "ours-eos": "processor PostgresSink, exactly-once",
    "ours-alos": "processor PostgresSink, at-least-once",
    "quix": "Quix Streams PostgreSQLSink (at-least-once)",
    "plain": "plain loop: confluent-kafka + psycopg COPY (ceiling)",
}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def broker() -> Iterator[tuple[str, int | None]]:
    """The bootstrap servers, and the broker's process id when it is ours (`LocalBroker`)."""
    external = os.environ.get("PROCESSOR_TEST_BOOTSTRAP")
    if external:
        yield external, None
        return
    with LocalBroker() as local:
        process = getattr(local, "_process", None)
        yield local.bootstrap_servers, None if process is None else process.pid


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root: int | None) -> float:
    """CPU time (user + system) of the process `root`, its live descendants and the children
    they have reaped, from /proc; 0 when unknown."""
    if root is None:
        return 0.0
    stats: dict[int, tuple[int, float]] = {}  # pid: (parent, seconds)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
        ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
        stats[int(entry)] = (int(fields[1]), ticks / _TICKS)
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- input -------------------------------------------------------------------------------------


def value_of(n: int) -> dict[str, object]:
    return {
        "id": n,
        "name": f"customer-{n % 997}",
        "amount": n * 0.25,
        "qty": n % 50,
        "at": (START + timedelta(seconds=n)).isoformat(),
    }


def produce_input(bootstrap: str, topic: str, records: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        future.result()
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"}
    )
    for n in range(records):
        value = json.dumps(value_of(n)).encode()
        while True:
            try:
                producer.produce(topic, key=str(n).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise SystemExit("the input was not all produced")


def warm_up(bootstrap: str, topic: str) -> None:
    """Create the broker's internal topics (`__consumer_offsets`, `__transaction_state`) before
    anything is timed: a group join and a transaction, not timed, so that the first run does not
    pay for them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(f"{topic}-warm-up", 1, 1)]).values():
        future.result()
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"warm-{topic}"})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(f"{topic}-warm-up", value=b"warm")
    producer.commit_transaction(60)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"warm-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            consumer.commit(message=message, asynchronous=False)
            break
    consumer.close()


# --- one run -----------------------------------------------------------------------------------


@dataclass
class Run:
    contender: str
    seconds: float
    rows: int  # rows in the table when the worker was stopped
    duplicates: int  # rows beyond one per id
    load1: float  # the 1-minute load average at the end of the run
    cpu: tuple[float, float, float]  # CPU seconds of the worker, the broker, PostgreSQL

    @property
    def rate(self) -> float:
        return (self.rows - self.duplicates) / self.seconds


class RunFailed(Exception):
    pass


def command(
    contender: str, bootstrap: str, topic: str, group: str, dsn: str, state_dir: Path
) -> tuple[list[str], dict[str, str]]:
    env = base_env()
    if contender.startswith("ours"):
        eos = contender == "ours-eos"
        env.update(
            BENCH_INPUT=topic,
            BENCH_PG_DSN=dsn,
            BENCH_PG_TABLE=TABLE,
            BENCH_PG_EXACTLY_ONCE="1" if eos else "0",
        )
        return [
            sys.executable,
            "-m",
            "processor.cli",
            "run",
            "bench.contenders.pg_ours",
            "--bootstrap-servers",
            bootstrap,
            "--application-id",
            group,
            "--state-dir",
            str(state_dir),
            "--processing-guarantee",
            "exactly_once" if eos else "at_least_once",
            "--http-port",
            "0",
            "--log-level",
            os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        ], env
    common = ["--bootstrap", bootstrap, "--input", topic, "--group", group, "--table", TABLE]
    if contender == "quix":
        where = conninfo_to_dict(dsn)
        return [
            str(contenders_python()),
            "-m",
            "bench.contenders.pg_quix",
            *common,
            "--host",
            str(where["host"]),
            "--port",
            str(where["port"]),
            "--dbname",
            str(where["dbname"]),
            "--user",
            str(where["user"]),
        ], env
    if contender == "plain":
        return [sys.executable, "-m", "bench.contenders.pg_plain", *common, "--dsn", dsn], env
    raise SystemExit(f"unknown contender {contender!r}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def check(conn: psycopg.Connection, contender: str, records: int) -> tuple[int, int]:
    """The table's rows and duplicates; raises RunFailed when an id is missing, a row is wrong,
    or (exactly-once) a row is duplicated."""
    # Every row must hold exactly what value_of(id) produced.
    rows, distinct, id_sum, lowest, highest, right = conn.execute(
        f"""SELECT count(*), count(DISTINCT id), sum(DISTINCT id), min(id), max(id),
                   count(*) FILTER (WHERE name = 'customer-' || mod(id, 997) AND amount = id * 0.25
                                    AND qty = mod(id, 50)
                                    AND at = %s::timestamptz + id * interval '1 second')
            FROM {TABLE}""",
        (START,),
    ).fetchone()  # type: ignore[misc]
    problems = []
    if (distinct, id_sum, lowest, highest) != (
        records,
        records * (records - 1) // 2,
        0,
        records - 1,
    ):
        problems.append(
            f"ids: {distinct} distinct, sum {id_sum}, min {lowest}, max {highest} "
            f"(expected {records} distinct ids 0..{records - 1})"
        )
    if right != rows:
        problems.append(f"{rows - right} rows do not hold the values produced")
    if contender == "ours-eos" and rows != records:
        problems.append(f"exactly-once: {rows} rows for {records} records")
    if problems:
        raise RunFailed(f"{contender}: " + "; ".join(problems))
    return rows, rows - distinct


def run_once(
    server: LocalPostgres,
    bootstrap: str,
    broker_pid: int | None,
    topic: str,
    contender: str,
    index: int,
    records: int,
    timeout: float,
    work: Path,
    profile: Path | None,
) -> Run:
    suffix = uuid.uuid4().hex[:6]
    name = f"pg_{contender.replace('-', '_')}_{index}_{suffix}"
    dsn = server.create_database(name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(CREATE_TABLE)
            group = f"bench-pg-{contender}-{index}-{suffix}"
            cmd, env = command(contender, bootstrap, topic, group, dsn, work / name)
            log_path = work / f"{name}.log"
            with log_path.open("wb") as log:
                postgres_pid = getattr(getattr(server, "_process", None), "pid", None)
                cpu_before = (cpu_seconds(broker_pid), cpu_seconds(postgres_pid))
                started = time.monotonic()
                process = subprocess.Popen(
                    cmd,
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
                spy = None
                if profile is not None and contender.startswith("ours"):
                    spy = start_profile(process.pid, profile / f"{contender}-{index}.txt")
                try:
                    seconds = wait_for_rows(
                        conn, process, contender, index, records, started, timeout
                    )
                    cpu = (
                        cpu_seconds(process.pid),
                        cpu_seconds(broker_pid) - cpu_before[0],
                        cpu_seconds(postgres_pid) - cpu_before[1],
                    )
                finally:
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            spy.wait(30)
                    stop(process)
                    if process.returncode not in (0, -signal.SIGTERM):
                        tail = log_path.read_text(errors="replace")[-3000:]
                        progress(f"{contender} exited {process.returncode}; log tail:\n{tail}")
            rows, duplicates = check(conn, contender, records)
    finally:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return Run(contender, seconds, rows, duplicates, os.getloadavg()[0], cpu)


def wait_for_rows(
    conn: psycopg.Connection,
    process: subprocess.Popen[bytes],
    contender: str,
    index: int,
    records: int,
    started: float,
    timeout: float,
) -> float:
    last_report = started
    while True:
        count = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]  # type: ignore[index]
        now = time.monotonic()
        if count >= records:
            return now - started
        if process.poll() is not None:
            raise RunFailed(f"{contender}: the worker exited ({process.returncode}) at {count}")
        if now - started > timeout:
            raise RunFailed(f"{contender}: {count} rows after {timeout:.0f} s")
        if now - last_report >= PROGRESS_S:
            last_report = now
            progress(
                f"  {contender} run {index + 1}: {count:,} rows after {now - started:.0f} s "
                f"(load {load()})"
            )
        time.sleep(POLL_S)


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [str(py_spy), "record", "-o", str(out), "-f", "raw", "--pid", str(pid), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- report ------------------------------------------------------------------------------------


def versions(server_dsn: str) -> dict[str, str]:
    quix_python = str(contenders_python())
    probe = (
        "import importlib.metadata as m; print(m.version('quixstreams'), "
        "m.version('psycopg2-binary'), m.version('confluent-kafka'))"
    )
    quix, psycopg2, quix_ck = subprocess.run(
        [quix_python, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    with psycopg.connect(server_dsn) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "processor": commit,
        "Python": platform.python_version(),
        "PostgreSQL": str(postgres).split()[0],
        "Kafka": KAFKA_VERSION,
        "psycopg": importlib.metadata.version("psycopg"),
        "confluent-kafka": importlib.metadata.version("confluent-kafka"),
        "Quix Streams": quix,
        "psycopg2-binary": psycopg2,
        "confluent-kafka (Quix venv)": quix_ck,
    }


def summary(runs: list[Run]) -> tuple[float, float, float]:
    rates = [r.rate for r in runs]
    return statistics.median(rates), min(rates), max(rates)


def report(
    results: dict[str, list[Run]],
    records: int,
    runs: int,
    argv: list[str],
    found: dict[str, str],
    load_start: str,
    load_end: str,
) -> str:
    lines = [
        START_MARK,
        "## PostgreSQL sink end to end (issue 18): `bench/postgres_e2e.py`",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} vCPU shared with other work "
        f"({platform.machine()}, {platform.system()}), local broker and PostgreSQL on the same "
        f"machine (fsync off). Load average (1, 5, 15 min) at the start: {load_start}; at the "
        f"end: {load_end}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in found.items()) + ".",
        "",
        "```sh",
        " ".join([".venv/bin/python -m bench.postgres_e2e", *argv]).strip(),
        "```",
        "",
        f"{records:,} JSON records (5 fields) in a 6-partition topic into an empty table, one "
        f"worker process each; rows/s = {records:,} / (seconds from the worker's start until "
        f"`count(*)` reaches {records:,}), median of {runs} runs (min-max), the contenders "
        "alternating; the CPU seconds that the worker, the broker and PostgreSQL (all its "
        "processes) used during the run (from /proc); the 1-minute load average at the end of "
        "each run in the last column.",
        "",
        "| contender | rows/s (median) | min-max | seconds (median) | CPU s: worker / broker "
        "/ PostgreSQL (medians) | duplicates | load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for contender, done in results.items():
        if not done:
            lines.append(f"| {LABELS[contender]} | failed | | | | | |")
            continue
        median, low, high = summary(done)
        seconds = statistics.median(r.seconds for r in done)
        dups = ", ".join(str(r.duplicates) for r in done)
        loads = ", ".join(f"{r.load1:.1f}" for r in done)
        cpu = " / ".join(f"{statistics.median(r.cpu[i] for r in done):.1f}" for i in range(3))
        lines.append(
            f"| {LABELS[contender]} | {median:,.0f} | {low:,.0f}-{high:,.0f} | {seconds:.1f} | "
            f"{cpu} | {dups} | {loads} |"
        )
    medians = {c: summary(done)[0] for c, done in results.items() if done}
    ratios = []
    for ours in ("ours-eos", "ours-alos"):
        if ours not in medians:
            continue
        parts = []
        if "quix" in medians:
            parts.append(f"{medians[ours] / medians['quix']:.2f}x Quix Streams (target >= 2x)")
        if "plain" in medians:
            parts.append(
                f"{medians[ours] / medians['plain']:.0%} of the plain loop (target >= 50%)"
            )
        if parts:
            ratios.append(f"- {LABELS[ours]}: " + ", ".join(parts) + ".")
    if ratios:
        lines += ["", *ratios]
    lines += ["", NOTES, END_MARK]
    return "\n".join(lines) + "\n"


NOTES = """What each contender does (all read the same topic from the start with a new consumer \
group, and write into the same kind of table: five columns, no index):

- **ours, exactly-once**: `processor run`, `--processing-guarantee exactly_once`: the sink \
follows the source stream directly, so it reads the topic itself (no internal topic since \
ce9bae8); its 6 partitions are 6 sink tasks; each task's records are checked against the \
table's columns on the main thread (`prepare`) and written by its own \
writer thread and connection in batches (up to 10,000 records or 500 ms): one transaction per \
batch that locks the task's row in `processor_sink_offsets` (the fence), COPYs the rows and \
records the batch's next offset. The table is exactly the input after any crash.
- **ours, at-least-once**: the same path without Kafka transactions and without the offsets \
table (`PostgresSink(exactly_once=False)`): a batch is one COPY transaction, the Kafka offsets \
are committed after it; a crash can write a batch twice.
- **Quix Streams**: `sdf.sink(PostgreSQLSink(...))` in one application, at-least-once: the \
sink collects every record of a checkpoint (5 s by default) and at the checkpoint writes them \
in one transaction with `psycopg2.extras.execute_values` (`INSERT ... VALUES`, 100 rows per \
statement), then the offsets are committed. No internal topic, no per-record type checks (the \
database refuses a bad value, failing the whole checkpoint). Configured for its fastest path: \
`schema_auto_update=False` (else each batch runs `ALTER TABLE ... ADD COLUMN IF NOT EXISTS` per \
column), `include_metadata=False` (else it adds `__key` and `timestamp` columns).
- **plain loop (ceiling)**: confluent-kafka `consume()` of 10,000 messages, `json.loads`, \
psycopg 3 `COPY ... FROM STDIN` of the 10,000 tuples, commit, async offset commit; one thread, \
no internal topic, no checks, no fencing, no backpressure, at-least-once.

The timed span includes process start-up and the consumer group join for every contender. \
Each run's table is checked after the worker stops: every id present, every row holding the \
values produced; for exactly-once also no duplicate (at-least-once duplicates are counted in the \
table: none occur in a run without failures)."""


def write_results(section: str) -> None:
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    if START_MARK in text and END_MARK in text:
        before, rest = text.split(START_MARK, 1)
        after = rest.split(END_MARK, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS_MD.write_text(text)


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--no-results", action="store_true", help="leave RESULTS.md alone")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs")
    args = parser.parse_args()
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for contender in chosen:
        if contender not in LABELS:
            raise SystemExit(f"unknown contender {contender!r}: choose from {CONTENDERS}")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    load_start = load()
    progress(f"load average {load_start}")
    contenders_python()  # the Quix venv, completed before anything is timed
    work = Path(tempfile.mkdtemp(prefix="bench-pg-e2e-"))
    results: dict[str, list[Run]] = {c: [] for c in chosen}
    failed: set[str] = set()
    try:
        with broker() as (bootstrap, broker_pid), LocalPostgres() as server:
            topic = f"bench-pg-input-{uuid.uuid4().hex[:6]}"
            progress(f"producing {args.records:,} records to {topic}")
            produce_input(bootstrap, topic, args.records)
            warm_up(bootstrap, topic)
            found = versions(server.dsn())
            for index in range(args.runs):
                for contender in chosen:
                    if contender in failed:
                        continue
                    progress(f"{contender} run {index + 1}/{args.runs} (load {load()})")
                    try:
                        run = run_once(
                            server,
                            bootstrap,
                            broker_pid,
                            topic,
                            contender,
                            index,
                            args.records,
                            args.timeout,
                            work,
                            args.profile,
                        )
                    except RunFailed as exc:
                        progress(f"FAILED: {exc}")
                        failed.add(contender)
                        results[contender] = []
                        continue
                    results[contender].append(run)
                    progress(
                        f"{contender} run {index + 1}: {run.rate:,.0f} rows/s "
                        f"({run.seconds:.1f} s, {run.rows:,} rows, {run.duplicates} duplicates; "
                        f"CPU s: worker {run.cpu[0]:.1f}, broker {run.cpu[1]:.1f}, PostgreSQL "
                        f"{run.cpu[2]:.1f}; load {load()})"
                    )
    finally:
        if args.keep:
            progress(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    load_end = load()
    section = report(results, args.records, args.runs, sys.argv[1:], found, load_start, load_end)
    print(section)
    if not args.no_results and args.profile is None:
        write_results(section)
        progress(f"written to {RESULTS_MD}")


if __name__ == "__main__":
    main()
