"""Questions asked of librdkafka and of a Kafka cluster before a worker starts, with
throwaway clients whose own logging is silenced (errors come back as values, not log lines).

Used by `processor.testing.broker` to wait for a broker it started, and by
`processor.runtime.preflight` for the startup checks: code outside `processor.kafka` does not
import confluent_kafka.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from processor.errors import BrokerError
from processor.kafka.settings import Client

# librdkafka logs through this logger, which drops everything: a probe reports what went wrong
# in its return value, and the worker's user reads one line instead of librdkafka's retries.
_SILENT = logging.getLogger("processor.kafka.probe.librdkafka")
_SILENT.addHandler(logging.NullHandler())
_SILENT.propagate = False


def _probe_conf(settings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """`settings` for a probe client: librdkafka's logging silenced, and reconnecting at least
    every second (librdkafka backs off up to 10 s), so that a broker which comes up while a
    probe waits for it is found at once, unless the user chose their own backoff."""
    conf: dict[str, Any] = {**settings, "logger": _SILENT, **extra}
    if not any(key.startswith("reconnect.backoff") for key in settings):
        conf["reconnect.backoff.max.ms"] = 1000
    return conf


def broker_answers(bootstrap: str, timeout: float) -> bool:
    """Return whether a broker at `bootstrap` answers a metadata request within `timeout` seconds.

    True only when the answer names at least one broker. Connection failures are expected
    while a broker starts, so librdkafka's own logging is silenced and every client error
    reads as "not yet".
    """
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            "log_level": 0,
        }
    )
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)


# --- librdkafka settings ----------------------------------------------------------------------


def settings_problem(client: Client, settings: Mapping[str, Any]) -> str | None:
    """librdkafka's objection to `settings` for a client of this kind, or None when it takes them.

    Builds a throwaway client without bootstrap servers, so nothing connects; librdkafka checks
    names, types, ranges and combinations (and loads certificates) when a client is built.
    """
    conf = {**settings, "logger": _SILENT}
    conf.pop("bootstrap.servers", None)
    try:
        if client == "consumer":
            Consumer(conf).close()
        elif client == "producer":
            Producer(conf)
        else:
            AdminClient(conf)
    except KafkaException as e:
        return _one_line(_error_text(e))
    return None


def is_unknown_setting(problem: str) -> bool:
    """Whether `settings_problem` said that a setting does not exist."""
    return "No such configuration property" in problem


# --- the cluster ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionState:
    leader: int
    replicas: int
    in_sync: int


@dataclass(frozen=True)
class Cluster:
    """What a metadata request told about the cluster."""

    brokers: dict[int, str]
    """Broker id -> the address it advertises (host:port)."""
    partitions: dict[str, tuple[PartitionState, ...]]
    """Every topic the client may see, internal ones included, with its partitions."""


class _Errors:
    """Collects the errors a client reports through `error_cb` (served by `poll()`)."""

    def __init__(self) -> None:
        self.last: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        self.last = error

    def describe(self) -> str | None:
        return None if self.last is None else _one_line(_client_error_text(self.last))


class ClusterUnreachable(BrokerError):
    """No broker answered a metadata request in time; the message is librdkafka's last error."""


def reach_cluster(settings: Mapping[str, Any], timeout: float) -> Cluster:
    """Ask the cluster at `settings["bootstrap.servers"]` for its metadata, waiting up to
    `timeout` seconds for a broker to answer (one that is starting is waited for).

    Raises `ClusterUnreachable` with the last connection error librdkafka reported.
    """
    errors = _Errors()
    admin = AdminClient(_probe_conf(settings, error_cb=errors))
    try:
        metadata = admin.list_topics(timeout=max(timeout, 0.001))
    except KafkaException as e:
        with contextlib.suppress(KafkaException):
            admin.poll(0)  # serves error_cb
        raise ClusterUnreachable(errors.describe() or _error_text(e)) from None
    return Cluster(
        brokers={b.id: f"{b.host}:{b.port}" for b in metadata.brokers.values()},
        partitions={
            name: tuple(
                PartitionState(p.leader, len(p.replicas), len(p.isrs))
                for p in topic.partitions.values()
            )
            for name, topic in metadata.topics.items()
            if topic.error is None
        },
    )


def broker_settings(
    settings: Mapping[str, Any], broker_id: int, names: tuple[str, ...], timeout: float
) -> dict[str, str]:
    """The values of the broker configs `names` on broker `broker_id`, or {} when they cannot be
    read (no DescribeConfigs permission, timeout): callers use them to explain, not to decide."""
    admin = AdminClient(_probe_conf(settings))
    resource = ConfigResource(ResourceType.BROKER, str(broker_id))
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout=timeout)
    except Exception:  # any failure means "unknown"; the caller says less, never something wrong
        return {}
    return {name: str(entries[name].value) for name in names if name in entries}


@dataclass(frozen=True)
class TransactionsFailure:
    code: str
    """librdkafka's error name, e.g. `_TIMED_OUT` or `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`."""
    message: str


def init_transactions(
    settings: Mapping[str, Any], transactional_id: str, timeout: float
) -> TransactionsFailure | None:
    """Initialise transactions with a throwaway producer using `transactional_id`; None when
    the cluster did within `timeout` seconds, else what went wrong.

    This is the first thing an exactly-once producer does; it fails when the cluster has no
    usable transaction coordinator or the principal may not use transactional ids."""
    errors = _Errors()
    producer = Producer(
        _probe_conf(settings, **{"transactional.id": transactional_id, "error_cb": errors})
    )
    try:
        producer.init_transactions(max(timeout, 0.001))
    except KafkaException as e:
        error: KafkaError = e.args[0]
        text = _one_line(error.str())
        if error.code() == KafkaError._TIMED_OUT:
            with contextlib.suppress(KafkaException):
                producer.poll(0)  # serves error_cb: why no broker answered, if none did
            if errors.describe():
                text = f"{text} (last client error: {errors.describe()})"
        return TransactionsFailure(error.name(), text)
    finally:
        # Nothing was produced, so nothing waits; a producer in a fatal state raises here.
        with contextlib.suppress(KafkaException):
            producer.flush(0)
    return None


# --- error text -------------------------------------------------------------------------------

_BROKER_PREFIX = re.compile(r"^\S+/(?:bootstrap|\d+): ")
_AFTER = re.compile(r"\s*\(after \d+ms in state \w+\)")


def _error_text(e: KafkaException) -> str:
    error = e.args[0]
    return str(error.str()) if isinstance(error, KafkaError) else str(error)


def _client_error_text(error: KafkaError) -> str:
    """`127.0.0.1:1/bootstrap: Connect to ... failed: Connection refused (after 0ms in state
    CONNECT)` -> `Connect to ... failed: Connection refused`."""
    return _AFTER.sub("", _BROKER_PREFIX.sub("", str(error.str())))


def _one_line(text: str) -> str:
    return " ".join(text.split())
