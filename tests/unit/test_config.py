"""`processor.config.load`: flags over environment over defaults; errors name the setting."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from processor.config import (
    RESERVED_KAFKA_SETTINGS,
    ProcessingGuarantee,
    WorkerConfig,
    check_environment,
    load,
    parse_kafka_pairs,
    unknown_environment_settings,
)
from processor.errors import ConfigError
from processor.topology.handling import ErrorHandler

BOOTSTRAP = {"PROCESSOR_BOOTSTRAP_SERVERS": "env-host:9092"}


def _load(
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    kafka_pairs: list[str] | None = None,
    default_application_id: str = "my-app",
) -> WorkerConfig:
    return load(
        flags=flags or {},
        kafka_pairs=kafka_pairs or [],
        environ=BOOTSTRAP if environ is None else environ,
        default_application_id=default_application_id,
    )


# --- sources and precedence -----------------------------------------------------------------


def test_defaults() -> None:
    cfg = _load()
    assert cfg.bootstrap_servers == "env-host:9092"
    assert cfg.application_id == "my-app"
    assert cfg.instance_id is None
    assert cfg.processing_guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    assert not cfg.exactly_once
    assert cfg.commit_interval_ms == 1000
    assert cfg.static_membership is False
    assert cfg.assignment_balance_factor == 1.0
    assert cfg.consume_batch_size == 1000
    assert cfg.num_standby_replicas == 0
    assert cfg.acceptable_recovery_lag == 10_000
    assert cfg.max_warmup_time_ms == 300_000
    assert cfg.state_cleanup_delay_ms == 600_000
    assert (cfg.http_host, cfg.http_port, cfg.http_token) == ("127.0.0.1", 0, None)
    assert (cfg.query_timeout_ms, cfg.query_max_requests, cfg.query_max_forwards) == (5000, 8, 4)
    assert dict(cfg.kafka) == {}


def test_every_setting_can_come_from_the_environment() -> None:
    cfg = _load(
        environ={
            "PROCESSOR_BOOTSTRAP_SERVERS": "a:1,b:2",
            "PROCESSOR_APPLICATION_ID": "env-app",
            "PROCESSOR_INSTANCE_ID": "worker-7",
            "PROCESSOR_STATE_DIR": "/var/lib/x",
            "PROCESSOR_PROCESSING_GUARANTEE": "exactly_once",
            "PROCESSOR_COMMIT_INTERVAL_MS": "250",
            "PROCESSOR_STATIC_MEMBERSHIP": "true",
            "PROCESSOR_ASSIGNMENT_BALANCE_FACTOR": "1.5",
            "PROCESSOR_CONSUME_BATCH_SIZE": "10",
            "PROCESSOR_NUM_STANDBY_REPLICAS": "2",
            "PROCESSOR_ACCEPTABLE_RECOVERY_LAG": "500",
            "PROCESSOR_MAX_WARMUP_TIME_MS": "60000",
            "PROCESSOR_STATE_CLEANUP_DELAY_MS": "1000",
            "PROCESSOR_HTTP_HOST": "0.0.0.0",
            "PROCESSOR_HTTP_PORT": "9100",
            "PROCESSOR_QUERY_TIMEOUT_MS": "2500",
            "PROCESSOR_QUERY_MAX_REQUESTS": "4",
            "PROCESSOR_QUERY_MAX_FORWARDS": "2",
        }
    )
    assert cfg.bootstrap_servers == "a:1,b:2"
    assert cfg.application_id == "env-app"
    assert cfg.instance_id == "worker-7"
    assert cfg.state_dir == Path("/var/lib/x")
    assert cfg.app_state_dir == Path("/var/lib/x/env-app")
    assert cfg.exactly_once
    assert cfg.commit_interval_ms == 250
    assert cfg.static_membership is True
    assert cfg.assignment_balance_factor == 1.5
    assert cfg.consume_batch_size == 10
    assert cfg.num_standby_replicas == 2
    assert cfg.acceptable_recovery_lag == 500
    assert cfg.max_warmup_time_ms == 60_000
    assert cfg.state_cleanup_delay_ms == 1000
    assert (cfg.http_host, cfg.http_port) == ("0.0.0.0", 9100)
    assert (cfg.query_timeout_ms, cfg.query_max_requests, cfg.query_max_forwards) == (2500, 4, 2)


def test_flags_override_the_environment() -> None:
    cfg = _load(
        flags={
            "bootstrap_servers": "flag-host:1",
            "application_id": "flag-app",
            "commit_interval_ms": "50",
            "processing_guarantee": "at_least_once",
        },
        environ={
            "PROCESSOR_BOOTSTRAP_SERVERS": "env-host:2",
            "PROCESSOR_APPLICATION_ID": "env-app",
            "PROCESSOR_COMMIT_INTERVAL_MS": "5000",
            "PROCESSOR_PROCESSING_GUARANTEE": "exactly_once",
        },
    )
    assert cfg.bootstrap_servers == "flag-host:1"
    assert cfg.application_id == "flag-app"
    assert cfg.commit_interval_ms == 50
    assert cfg.processing_guarantee is ProcessingGuarantee.AT_LEAST_ONCE


def test_a_flag_left_unset_falls_back_to_the_environment() -> None:
    cfg = _load(
        flags={"bootstrap_servers": None, "commit_interval_ms": None},
        environ={**BOOTSTRAP, "PROCESSOR_COMMIT_INTERVAL_MS": "300"},
    )
    assert cfg.bootstrap_servers == "env-host:9092"
    assert cfg.commit_interval_ms == 300


def test_application_id_defaults_to_the_topology_name() -> None:
    assert _load(default_application_id="words").application_id == "words"
    cfg = _load(flags={"application_id": "other"}, default_application_id="words")
    assert cfg.application_id == "other"


def test_internal_topic_names_derive_from_the_application_id() -> None:
    cfg = _load(flags={"application_id": "billing"})
    assert cfg.coordination_topic == "billing-coordination"
    assert cfg.metadata_topic == "billing-metadata"


def test_processing_guarantee_is_case_insensitive() -> None:
    assert _load(flags={"processing_guarantee": " Exactly_Once "}).exactly_once


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("yes", True), ("ON", True), ("0", False), ("no", False), ("off", False)],
)
def test_static_membership_booleans(text: str, expected: bool) -> None:
    assert _load(flags={"static_membership": text}).static_membership is expected


# --- librdkafka settings --------------------------------------------------------------------


def test_kafka_environment_variables_become_dotted_librdkafka_keys() -> None:
    cfg = _load(environ={**BOOTSTRAP, "PROCESSOR_KAFKA_SESSION_TIMEOUT_MS": "6000"})
    assert dict(cfg.kafka) == {"session.timeout.ms": "6000"}


def test_kafka_pairs_are_parsed() -> None:
    cfg = _load(kafka_pairs=["session.timeout.ms=6000", "security.protocol=SSL", "x.y=a=b"])
    assert dict(cfg.kafka) == {
        "session.timeout.ms": "6000",
        "security.protocol": "SSL",
        "x.y": "a=b",
    }


def test_kafka_pairs_override_kafka_environment_variables() -> None:
    cfg = _load(
        environ={
            **BOOTSTRAP,
            "PROCESSOR_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "PROCESSOR_KAFKA_FETCH_MAX_BYTES": "1024",
        },
        kafka_pairs=["session.timeout.ms=45000"],
    )
    assert dict(cfg.kafka) == {"session.timeout.ms": "45000", "fetch.max.bytes": "1024"}


@pytest.mark.parametrize("pair", ["no-equals-sign", "=value", "  =value"])
def test_a_malformed_kafka_pair_is_rejected_with_an_example(pair: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_kafka_pairs([pair])
    assert excinfo.value.setting == "kafka"
    assert repr(pair) in str(excinfo.value)
    assert "KEY=VALUE" in str(excinfo.value)


@pytest.mark.parametrize("key", sorted(RESERVED_KAFKA_SETTINGS))
def test_reserved_kafka_keys_are_rejected_naming_the_setting_to_use(key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(kafka_pairs=[f"{key}=x"])
    assert excinfo.value.setting == f"kafka.{key}"
    assert key in str(excinfo.value)
    assert RESERVED_KAFKA_SETTINGS[key] in str(excinfo.value)


def test_group_id_from_the_environment_is_rejected_pointing_at_application_id() -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(environ={**BOOTSTRAP, "PROCESSOR_KAFKA_GROUP_ID": "mine"})
    assert "group.id" in str(excinfo.value)
    assert "application_id" in str(excinfo.value)


def test_variables_for_other_tools_are_not_librdkafka_settings() -> None:
    # the local test broker's jar cache shares the PROCESSOR_KAFKA_ prefix
    cfg = _load(environ={**BOOTSTRAP, "PROCESSOR_KAFKA_CACHE": "/tmp/jars"})
    assert dict(cfg.kafka) == {}


# --- errors ---------------------------------------------------------------------------------


def test_missing_bootstrap_servers_says_how_to_set_them() -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(environ={})
    error = excinfo.value
    assert error.setting == "bootstrap_servers"
    message = str(error)
    assert "bootstrap_servers" in message
    assert "--bootstrap-servers" in message
    assert "PROCESSOR_BOOTSTRAP_SERVERS" in message


def test_blank_bootstrap_servers_count_as_missing() -> None:
    with pytest.raises(ConfigError, match="bootstrap_servers"):
        _load(flags={"bootstrap_servers": "   "}, environ={})


@pytest.mark.parametrize(
    ("setting", "text"),
    [
        ("commit_interval_ms", "abc"),
        ("commit_interval_ms", "1.5"),
        ("consume_batch_size", "lots"),
        ("assignment_balance_factor", "high"),
        ("static_membership", "maybe"),
        ("num_standby_replicas", "one"),
        ("http_port", "80.5"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_setting_and_value(setting: str, text: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(flags={setting: text})
    assert excinfo.value.setting == setting
    assert setting in str(excinfo.value)
    assert repr(text) in str(excinfo.value)


def test_a_wrong_type_from_the_environment_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"commit_interval_ms.*'abc'"):
        _load(environ={**BOOTSTRAP, "PROCESSOR_COMMIT_INTERVAL_MS": "abc"})


@pytest.mark.parametrize(
    ("setting", "text"),
    [
        ("commit_interval_ms", "0"),
        ("commit_interval_ms", "-5"),
        ("consume_batch_size", "0"),
        ("assignment_balance_factor", "0.9"),
        ("assignment_balance_factor", "nan"),
        ("num_standby_replicas", "-1"),
        ("acceptable_recovery_lag", "-1"),
        ("max_warmup_time_ms", "-1"),
        ("state_cleanup_delay_ms", "-1"),
        ("http_port", "65536"),
        ("http_port", "-1"),
        ("query_timeout_ms", "0"),
        ("query_max_requests", "0"),
        ("query_max_forwards", "-1"),
    ],
)
def test_out_of_range_numbers_name_the_setting(setting: str, text: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(flags={setting: text})
    assert excinfo.value.setting == setting


def test_unknown_processing_guarantee_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(flags={"processing_guarantee": "exactly_twice"})
    error = excinfo.value
    assert error.setting == "processing_guarantee"
    assert "'exactly_twice'" in str(error)
    assert "at_least_once" in str(error) and "exactly_once" in str(error)


@pytest.mark.parametrize("app_id", ["has space", "a/b", "café"])
def test_invalid_application_id_is_rejected(app_id: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(flags={"application_id": app_id})
    assert excinfo.value.setting == "application_id"
    assert repr(app_id) in str(excinfo.value)


def test_blank_instance_id_is_rejected() -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load(flags={"instance_id": "  "})
    assert excinfo.value.setting == "instance_id"


def test_empty_instance_id_means_generate_one() -> None:
    assert _load(flags={"instance_id": ""}).instance_id is None


def test_worker_config_is_keyword_only_and_frozen() -> None:
    cfg = WorkerConfig(bootstrap_servers="h:1", application_id="a")
    with pytest.raises(TypeError):
        WorkerConfig("h:1", "a")  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.bootstrap_servers = "x"  # type: ignore[misc]


def test_config_error_keeps_setting_and_problem() -> None:
    error = ConfigError("commit_interval_ms", "is wrong")
    assert (error.setting, error.problem) == ("commit_interval_ms", "is wrong")
    assert str(error) == "config 'commit_interval_ms': is wrong"


# --- typos in the environment ---------------------------------------------------------------


def test_a_misspelled_variable_is_reported() -> None:
    environ: dict[str, Any] = {
        "PROCESSOR_BOOTSTRAP_SERVER": "x:1",  # missing S
        "PROCESSOR_BOOTSTRAP_SERVERS": "x:1",
        "PROCESSOR_COMMIT_INTERVAL": "5",
        "PATH": "/usr/bin",
        "PROCESSOR_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    assert unknown_environment_settings(environ) == [
        "PROCESSOR_BOOTSTRAP_SERVER",
        "PROCESSOR_COMMIT_INTERVAL",
    ]


def test_known_variables_are_not_reported() -> None:
    environ = {
        "PROCESSOR_BOOTSTRAP_SERVERS": "x:1",
        "PROCESSOR_APPLICATION_ID": "a",
        "PROCESSOR_INSTANCE_ID": "i",
        "PROCESSOR_STATE_DIR": "/s",
        "PROCESSOR_PROCESSING_GUARANTEE": "at_least_once",
        "PROCESSOR_COMMIT_INTERVAL_MS": "1",
        "PROCESSOR_STATIC_MEMBERSHIP": "true",
        "PROCESSOR_ASSIGNMENT_BALANCE_FACTOR": "1.0",
        "PROCESSOR_CONSUME_BATCH_SIZE": "1",
        "PROCESSOR_KAFKA_ANYTHING": "x",
        # read by the CLI (--log-level default) and by the test tooling
        "PROCESSOR_LOG_LEVEL": "DEBUG",
        "PROCESSOR_TEST_BOOTSTRAP": "x:1",
        "PROCESSOR_KAFKA_CACHE": "/tmp",
    }
    assert unknown_environment_settings(environ) == []


def test_error_handlers_default_to_fail_and_dead_letters_to_an_application_topic() -> None:
    config = _load()
    assert config.deserialization_error_handler is ErrorHandler.FAIL
    assert config.processing_error_handler is ErrorHandler.FAIL
    assert config.production_error_handler is ErrorHandler.FAIL
    assert config.dead_letters == "my-app-dead-letters"
    assert (config.processing_retry_attempts, config.processing_retry_backoff_ms) == (3, 100)


def test_error_handlers_and_the_dead_letter_topic_can_be_set() -> None:
    config = _load(
        flags={"processing_error_handler": "dead_letter", "dead_letter_topic": "bad-stuff"},
        environ={**BOOTSTRAP, "PROCESSOR_DESERIALIZATION_ERROR_HANDLER": "skip"},
    )
    assert config.deserialization_error_handler is ErrorHandler.SKIP
    assert config.processing_error_handler is ErrorHandler.DEAD_LETTER
    assert config.dead_letters == "bad-stuff"


def test_an_unknown_error_handler_names_the_setting_and_the_choices() -> None:
    with pytest.raises(ConfigError) as raised:
        _load(flags={"production_error_handler": "ignore"})
    assert raised.value.setting == "production_error_handler"
    assert "one of fail, skip, dead_letter" in str(raised.value)


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        ({"dead_letter_topic": "bad topic"}, "dead_letter_topic"),
        ({"processing_retry_attempts": "-1"}, "processing_retry_attempts"),
        ({"processing_retry_backoff_ms": "x"}, "processing_retry_backoff_ms"),
        (
            {"processing_retry_backoff_ms": "500", "processing_retry_max_backoff_ms": "100"},
            "processing_retry_max_backoff_ms",
        ),
    ],
)
def test_bad_dead_letter_and_retry_settings_name_the_setting(
    flags: dict[str, str], setting: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(flags=flags)
    assert raised.value.setting == setting


# --- the store cache's byte budget ------------------------------------------------------------


def test_the_store_cache_budget_defaults_to_64_mib() -> None:
    assert _load().store_cache_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1048576", 1 << 20),
        ("64MiB", 64 << 20),
        ("512KiB", 512 << 10),
        ("1gib", 1 << 30),
        (" 64 MB ", 64_000_000),
        ("500kB", 500_000),
        ("2GB", 2_000_000_000),
        ("4096B", 4096),
    ],
)
def test_store_cache_bytes_takes_integers_and_units(text: str, expected: int) -> None:
    assert _load(flags={"store_cache_bytes": text}).store_cache_bytes == expected
    environ = {**BOOTSTRAP, "PROCESSOR_STORE_CACHE_BYTES": text}
    assert _load(environ=environ).store_cache_bytes == expected


@pytest.mark.parametrize("text", ["lots", "64XB", "1.5GiB", "-5", "MiB", "64 M"])
def test_a_malformed_size_names_the_setting_and_shows_examples(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(flags={"store_cache_bytes": text})
    assert raised.value.setting == "store_cache_bytes"
    assert repr(text) in str(raised.value)
    assert "64MiB" in str(raised.value)


@pytest.mark.parametrize("text", ["0", "0MiB"])
def test_the_store_cache_budget_must_be_positive(text: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(flags={"store_cache_bytes": text})
    assert raised.value.setting == "store_cache_bytes"


def test_the_replaced_store_cache_size_flag_is_refused_naming_its_successor() -> None:
    with pytest.raises(ConfigError) as raised:
        _load(flags={"store_cache_size": "50000"})
    assert raised.value.setting == "store_cache_size"
    message = str(raised.value)
    assert "replaced by store_cache_bytes" in message
    assert "--store-cache-bytes" in message and "PROCESSOR_STORE_CACHE_BYTES" in message
    assert "64 MiB" in message


def test_the_replaced_store_cache_size_variable_is_refused_naming_its_successor() -> None:
    environ = {**BOOTSTRAP, "PROCESSOR_STORE_CACHE_SIZE": "50000"}
    for check in (lambda: _load(environ=environ), lambda: check_environment(environ)):
        with pytest.raises(ConfigError) as raised:
            check()
        assert raised.value.setting == "PROCESSOR_STORE_CACHE_SIZE"
        assert "replaced by store_cache_bytes" in str(raised.value)
        assert "--store-cache-bytes" in str(raised.value)


def test_max_task_idle_ms_from_flag_or_environment_and_its_bounds() -> None:
    assert _load().max_task_idle_ms == 0
    assert _load({"max_task_idle_ms": "250"}).max_task_idle_ms == 250
    env = {**BOOTSTRAP, "PROCESSOR_MAX_TASK_IDLE_MS": "-1"}
    assert _load(environ=env).max_task_idle_ms == -1
    with pytest.raises(ConfigError, match=r"max_task_idle_ms.*-1 \(never wait\)"):
        _load({"max_task_idle_ms": "-2"})
