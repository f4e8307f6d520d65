"""Startup configuration mistakes that need no broker: each fails with one line naming the
setting and the fix (the ones that need a broker are in tests/integration/test_startup_errors.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from processor.cli import main
from processor.config import WorkerConfig, load
from processor.errors import ConfigError
from processor.runtime.preflight import LIBRDKAFKA_SETTINGS_URL, check_settings

pytestmark = pytest.mark.usefixtures("cli_environment")


def _load(
    flags: Mapping[str, str | None] | None = None,
    kafka: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> WorkerConfig:
    return load(
        flags={"bootstrap_servers": "broker:9092", **(flags or {})},
        kafka_pairs=kafka or [],
        environ=environ or {},
        default_application_id="app",
    )


def _error(
    flags: Mapping[str, str | None] | None = None,
    kafka: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ConfigError:
    """The ConfigError loading and checking these settings raises."""
    with pytest.raises(ConfigError) as excinfo:
        check_settings(_load(flags, kafka, environ))
    return excinfo.value


def _run_fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `processor run ARGV` in-process; it must exit 2 with one line on stderr: return it."""
    assert main(["run", "topologies.wordcount", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("processor: configuration error: config ")
    return lines[0]


# --- unknown settings ---------------------------------------------------------------------------


def test_an_unknown_librdkafka_setting_names_it_and_says_to_fix_or_remove_it() -> None:
    error = _error(kafka=["foo.bar=1"])
    assert error.setting == "kafka.foo.bar"
    assert "no such setting" in str(error)
    assert LIBRDKAFKA_SETTINGS_URL in str(error)
    assert "remove it" in str(error)


def test_an_unknown_setting_for_one_client_is_named_with_its_prefix() -> None:
    assert (
        _error(kafka=["consumer.fetch.wait.maximum=1"]).setting
        == "kafka.consumer.fetch.wait.maximum"
    )
    assert _error(kafka=["producer.nope=1"]).setting == "kafka.producer.nope"


def test_a_java_client_setting_librdkafka_lacks_is_unknown() -> None:
    error = _error(kafka=["default.api.timeout.ms=60000", "session.timeout.ms=10000"])
    assert error.setting == "kafka.default.api.timeout.ms"


@pytest.mark.parametrize(
    ("pair", "setting"),
    [
        ("session.timeout.ms=abc", "kafka.session.timeout.ms"),
        ("session.timeout.ms=999999999", "kafka.session.timeout.ms"),
        ("compression.type=zip", "kafka.compression.type"),  # librdkafka names its alias
        ("enable.partition.eof=maybe", "kafka.enable.partition.eof"),
        ("acks=several", "kafka.acks"),
    ],
)
def test_a_librdkafka_setting_of_the_wrong_type_or_range_names_it_and_its_value(
    pair: str, setting: str
) -> None:
    error = _error(kafka=[pair])
    assert error.setting == setting
    value = pair.partition("=")[2]
    assert repr(value) in str(error)
    assert "or remove the setting" in str(error)


def test_a_certificate_that_cannot_be_loaded_is_named() -> None:
    error = _error(kafka=["security.protocol=SSL", "ssl.ca.location=/nonexistent/ca.pem"])
    assert error.setting == "kafka.ssl.ca.location"
    assert "'/nonexistent/ca.pem'" in str(error)


def test_settings_refused_only_under_exactly_once_are_checked_against_it() -> None:
    check_settings(_load(kafka=["enable.idempotence=false"]))  # fine for at-least-once
    error = _error({"processing_guarantee": "exactly_once"}, ["enable.idempotence=false"])
    assert error.setting == "kafka.enable.idempotence"
    assert "enable.idempotence=true" in str(error)


def test_valid_librdkafka_settings_pass() -> None:
    check_settings(
        _load(
            kafka=[
                "session.timeout.ms=10000",
                "linger.ms=20",
                "compression.type=lz4",
                "consumer.fetch.max.bytes=1048576",
                "admin.socket.timeout.ms=5000",
            ],
            environ={"PROCESSOR_KAFKA_STATISTICS_INTERVAL_MS": "0"},
        )
    )


def test_an_unknown_setting_from_the_environment_is_named_like_a_flag() -> None:
    assert _error(environ={"PROCESSOR_KAFKA_FOO_BAR": "1"}).setting == "kafka.foo.bar"


def test_the_cli_reports_an_unknown_librdkafka_setting_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The broker address is never reached: librdkafka settings are checked before anything.
    line = _run_fails(["--bootstrap-servers", "127.0.0.1:1", "--kafka", "foo.bar=1"], capsys)
    assert "'kafka.foo.bar'" in line and "no such setting" in line


def test_the_cli_reports_a_misspelled_environment_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCESSOR_COMMIT_INTERVAL", "5")
    line = _run_fails(["--bootstrap-servers", "127.0.0.1:1"], capsys)
    assert "'PROCESSOR_COMMIT_INTERVAL'" in line and "is not a setting" in line


def test_the_cli_reports_an_unknown_flag_with_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(
            [
                "run",
                "topologies.wordcount",
                "--bootstrap-servers",
                "x:1",
                "--comit-interval-ms",
                "5",
            ]
        )
    assert excinfo.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert "unrecognized arguments: --comit-interval-ms" in last


# --- wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "text", "expected"),
    [
        ("commit_interval_ms", "1s", "is not an integer"),
        ("static_membership", "maybe", "use true or false"),
        ("processing_guarantee", "exactly_twice", "at_least_once, exactly_once"),
        ("http_port", "http", "is not an integer"),
        ("startup_timeout_ms", "soon", "is not an integer"),
        ("assignment_balance_factor", "even", "is not a number"),
    ],
)
def test_a_value_of_the_wrong_type_from_the_environment_is_one_cli_line(
    setting: str,
    text: str,
    expected: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"PROCESSOR_{setting.upper()}", text)
    line = _run_fails(["--bootstrap-servers", "127.0.0.1:1"], capsys)
    assert f"config {setting!r}: {text!r}" in line
    assert expected in line


@pytest.mark.parametrize("text", ["off", "OFF", "none", ""])
def test_http_port_off_means_no_http_server(text: str) -> None:
    assert _load({"http_port": text}).http_port is None


def test_startup_timeout_defaults_to_30_seconds_and_can_be_set() -> None:
    assert _load().startup_timeout_ms == 30_000
    assert _load({"startup_timeout_ms": "2000"}).startup_timeout_ms == 2000
    assert _load(environ={"PROCESSOR_STARTUP_TIMEOUT_MS": "500"}).startup_timeout_ms == 500


@pytest.mark.parametrize("text", ["0", "-1"])
def test_startup_timeout_must_be_positive(text: str) -> None:
    with pytest.raises(ConfigError, match="'startup_timeout_ms': must be positive"):
        _load({"startup_timeout_ms": text})


# --- bootstrap servers --------------------------------------------------------------------------


def test_missing_bootstrap_servers_is_one_cli_line_saying_how_to_set_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _run_fails([], capsys)
    assert "'bootstrap_servers': is missing" in line
    assert "--bootstrap-servers HOST:PORT" in line and "PROCESSOR_BOOTSTRAP_SERVERS" in line


@pytest.mark.parametrize(
    ("servers", "fix"),
    [
        ("http://broker:9092", "write it without http://, as 'broker:9092'"),
        ("broker:9092,kafka://other:9092", "write it without kafka://, as 'other:9092'"),
        ("broker:abc", "e.g. broker1:9092,broker2:9092"),
        ("broker:99999", "e.g. broker1:9092,broker2:9092"),
        ("broker:9092/", "e.g. broker1:9092,broker2:9092"),
        ("broker one:9092", "e.g. broker1:9092,broker2:9092"),
    ],
)
def test_a_malformed_bootstrap_address_names_it_and_the_fix(servers: str, fix: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load({"bootstrap_servers": servers})
    assert excinfo.value.setting == "bootstrap_servers"
    assert "is not HOST:PORT" in str(excinfo.value)
    assert fix in str(excinfo.value)


@pytest.mark.parametrize(
    "servers",
    [
        "localhost",  # librdkafka's default port, 9092
        "broker-1.example.com:9092, broker-2.example.com:9092",
        "SSL://broker:9093",
        "sasl_ssl://broker:9094",
        "[::1]:9092",
        "10.0.0.1:9092,",
    ],
)
def test_bootstrap_addresses_librdkafka_takes_are_accepted(servers: str) -> None:
    assert _load({"bootstrap_servers": servers}).bootstrap_servers == servers


def test_a_malformed_bootstrap_address_is_one_cli_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = _run_fails(["--bootstrap-servers", "https://broker:9092"], capsys)
    assert "'bootstrap_servers'" in line and "as 'broker:9092'" in line
