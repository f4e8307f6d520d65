"""Configuration mistakes make `processor run` fail at startup, within a bounded time, with
stderr's last line naming the setting and the fix and no traceback: each case runs the real
command against a real broker (the session's, one without usable transactions, or none)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from processor.kafka.admin_probe import init_transactions
from processor.testing.broker import LocalBroker
from tests.integration.workers import REPO, start_worker
from tests.kafka_helpers import create_topic

pytestmark = pytest.mark.integration

# On a single broker, a transaction log that needs three replicas can never be created: the
# broker runs, but no transaction coordinator ever answers.
NO_TRANSACTIONS = {"transaction.state.log.replication.factor": "3"}
# Python start-up and the topology import, on a slow CI machine.
SLACK_S = 20.0


@pytest.fixture(scope="module")
def broker_without_transactions() -> Iterator[str]:
    with LocalBroker(config=NO_TRANSACTIONS) as broker:
        yield broker.bootstrap_servers


@dataclass(frozen=True)
class Run:
    code: int
    stderr: str
    seconds: float

    @property
    def last_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90.0
) -> Run:
    """`processor run topologies.wordcount ARGS` with no PROCESSOR_* variable but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROCESSOR_")}
    command = [sys.executable, "-m", "processor.cli", "run", "topologies.wordcount"]
    began = time.monotonic()
    done = subprocess.run(
        [*command, "--state-dir", str(tmp_path / "state"), *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(done.returncode, done.stderr, time.monotonic() - began)


def assert_config_error(result: Run, setting: str, *phrases: str) -> None:
    assert result.code == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.last_line.startswith(f"processor: configuration error: config {setting!r}: ")
    for phrase in phrases:
        assert phrase in result.last_line, f"{phrase!r} not in {result.last_line!r}"


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- unknown settings ---------------------------------------------------------------------------


def test_an_unknown_environment_setting(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "--bootstrap-servers",
        kafka_bootstrap,
        env={"PROCESSOR_COMIT_INTERVAL_MS": "100"},
    )
    assert_config_error(result, "PROCESSOR_COMIT_INTERVAL_MS", "is not a setting", "--help")


def test_an_unknown_flag(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = run(tmp_path, "--bootstrap-servers", kafka_bootstrap, "--comit-interval-ms", "100")
    assert result.code == 2
    assert "Traceback" not in result.stderr
    assert result.last_line.endswith("error: unrecognized arguments: --comit-interval-ms 100")


def test_an_unknown_librdkafka_setting(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = run(tmp_path, "--bootstrap-servers", kafka_bootstrap, "--kafka", "foo.bar=1")
    assert_config_error(
        result, "kafka.foo.bar", "librdkafka has no such setting", "CONFIGURATION.md", "remove it"
    )


def test_a_librdkafka_setting_of_the_wrong_type(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = run(
        tmp_path, "--bootstrap-servers", kafka_bootstrap, "--kafka", "session.timeout.ms=abc"
    )
    assert_config_error(
        result, "kafka.session.timeout.ms", "librdkafka refuses 'abc'", "or remove the setting"
    )


def test_an_unknown_librdkafka_setting_from_the_environment(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    result = run(
        tmp_path,
        "--bootstrap-servers",
        kafka_bootstrap,
        env={"PROCESSOR_KAFKA_SESION_TIMEOUT_MS": "6000"},
    )
    assert_config_error(result, "kafka.sesion.timeout.ms", "no such setting")


# --- wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "setting", "fix"),
    [
        ("PROCESSOR_STATIC_MEMBERSHIP", "maybe", "static_membership", "use true or false"),
        ("PROCESSOR_PROCESSING_GUARANTEE", "exactly-once", "processing_guarantee", "one of"),
        ("PROCESSOR_HTTP_PORT", "http", "http_port", "is not an integer"),
        ("PROCESSOR_COMMIT_INTERVAL_MS", "1s", "commit_interval_ms", "is not an integer"),
    ],
)
def test_a_setting_of_the_wrong_type(
    kafka_bootstrap: str, tmp_path: Path, variable: str, value: str, setting: str, fix: str
) -> None:
    result = run(tmp_path, "--bootstrap-servers", kafka_bootstrap, env={variable: value})
    assert_config_error(result, setting, repr(value), fix)


# --- bootstrap servers --------------------------------------------------------------------------


def test_missing_bootstrap_servers(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert_config_error(
        result, "bootstrap_servers", "is missing", "--bootstrap-servers", "PROCESSOR_BOOTSTRAP"
    )


def test_a_bootstrap_address_with_a_scheme(tmp_path: Path) -> None:
    result = run(tmp_path, "--bootstrap-servers", "http://127.0.0.1:9092")
    assert_config_error(
        result, "bootstrap_servers", "is not HOST:PORT", "without http://, as '127.0.0.1:9092'"
    )


def test_a_broker_that_cannot_be_reached_fails_within_the_startup_timeout(
    tmp_path: Path,
) -> None:
    servers = f"127.0.0.1:{_unused_port()}"
    result = run(tmp_path, "--bootstrap-servers", servers, "--startup-timeout-ms", "2000")
    assert_config_error(
        result,
        "bootstrap_servers",
        f"no broker at {servers} answered within 2 s",
        "Connection refused",
        "raise startup_timeout_ms",
    )
    assert 2.0 <= result.seconds < 2.0 + SLACK_S


def test_a_host_that_does_not_resolve_is_named_with_the_cause(tmp_path: Path) -> None:
    result = run(
        tmp_path, "--bootstrap-servers", "broker.invalid:9092", "--startup-timeout-ms", "1000"
    )
    assert_config_error(
        result, "bootstrap_servers", "broker.invalid:9092", "Failed to resolve", "check the hosts"
    )
    assert result.seconds < 1.0 + SLACK_S


# --- the HTTP port ----------------------------------------------------------------------------


def test_a_port_in_use_stops_the_worker_naming_the_setting(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run(tmp_path, "--bootstrap-servers", kafka_bootstrap, "--http-port", str(port))
    assert_config_error(
        result, "http_port", f"cannot serve HTTP on 127.0.0.1:{port}", "choose another port"
    )


# --- exactly-once without transactions ---------------------------------------------------------


def test_exactly_once_against_a_broker_without_transactions(
    broker_without_transactions: str, tmp_path: Path
) -> None:
    result = run(
        tmp_path,
        "--bootstrap-servers",
        broker_without_transactions,
        "--processing-guarantee",
        "exactly_once",
    )
    assert_config_error(
        result,
        "processing_guarantee",
        f"the cluster at {broker_without_transactions} cannot run them",
        "transaction.state.log.replication.factor=3 but the cluster has 1 broker",
        "set transaction.state.log.replication.factor to at most 1 on the brokers",
        "or use processing_guarantee=at_least_once",
    )
    # Diagnosed from the broker's settings, not by waiting for a coordinator.
    assert result.seconds < SLACK_S


def test_exactly_once_with_several_workers_is_still_one_line(
    broker_without_transactions: str, tmp_path: Path
) -> None:
    result = run(
        tmp_path,
        "--bootstrap-servers",
        broker_without_transactions,
        "--processing-guarantee",
        "exactly_once",
        "--workers",
        "2",
    )
    assert_config_error(result, "processing_guarantee", "or use processing_guarantee=at_least_once")


def test_a_transaction_timeout_the_broker_refuses(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "--bootstrap-servers",
        kafka_bootstrap,
        "--processing-guarantee",
        "exactly_once",
        "--kafka",
        "transaction.timeout.ms=3600000",  # the broker allows 15 minutes
    )
    assert_config_error(
        result,
        "kafka.transaction.timeout.ms",
        "refuse '3600000'",
        "set it to at most the brokers' transaction.max.timeout.ms",
    )


def test_that_broker_cannot_initialise_transactions(broker_without_transactions: str) -> None:
    # What the precise diagnosis above saves the user: a coordinator that never answers.
    began = time.monotonic()
    failure = init_transactions(
        {"bootstrap.servers": broker_without_transactions}, "probe-no-transactions", 2.0
    )
    assert failure is not None and failure.code == "_TIMED_OUT"
    assert time.monotonic() - began < 10.0


def test_at_least_once_runs_against_a_broker_without_transactions(
    broker_without_transactions: str, tmp_path: Path, unique_name: str
) -> None:
    source, sink = f"{unique_name}-in", f"{unique_name}-out"
    create_topic(broker_without_transactions, source, 2)
    create_topic(broker_without_transactions, sink, 2)
    worker = start_worker(
        "tests.worker_topologies:tagging",
        bootstrap=broker_without_transactions,
        env={"TEST_SOURCE_TOPIC": source, "TEST_SINK_TOPIC": sink},
        workdir=tmp_path,
        instance="alo",
    )
    try:
        worker.wait_for_log("waiting_for_members -> running", 60)
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()


def test_exactly_once_runs_against_a_broker_with_transactions(
    kafka_bootstrap: str, tmp_path: Path, topics: dict[str, str]
) -> None:
    worker = start_worker(
        "tests.worker_topologies:tagging",
        bootstrap=kafka_bootstrap,
        env=topics,
        workdir=tmp_path,
        instance="eos",
        extra=["--processing-guarantee", "exactly_once"],
    )
    try:
        worker.wait_for_log("waiting_for_members -> running", 60)
        assert worker.terminate() == 0
    finally:
        worker.stop_quietly()
