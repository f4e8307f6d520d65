"""Startup checks: configuration mistakes fail here, before a worker takes its state directory or
creates a topic, as one `ConfigError` naming the setting and the fix.

`preflight(config)` runs, in order:

1. `check_settings`: every librdkafka setting goes to a throwaway client of each kind it is meant
   for (nothing connects). A name librdkafka does not know, or a value or combination it
   refuses, fails naming `kafka.<key>`.
2. The cluster answers a metadata request at `bootstrap_servers` within `startup_timeout_ms`
   (a broker that is still starting is waited for). Else: which servers, how long, the last
   connection error and what to check.
3. Under exactly_once, the cluster can run transactions: when the transaction log does not exist
   yet and the brokers' `transaction.state.log.replication.factor` exceeds the broker count, this
   fails at once, saying so; otherwise a throwaway producer initialises transactions (transactional
   id `<application_id>-preflight`, so ACLs on the `<application_id>-` prefix cover it) within
   `startup_timeout_ms`, and a failure is explained from the transaction log's state when possible.

Each network step waits at most `startup_timeout_ms`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from processor.config import WorkerConfig
from processor.errors import ConfigError
from processor.kafka.admin_probe import (
    Cluster,
    ClusterUnreachable,
    TransactionsFailure,
    broker_settings,
    init_transactions,
    is_unknown_setting,
    reach_cluster,
    settings_problem,
)
from processor.kafka.settings import Client, settings_for

__all__ = ["check_cluster", "check_settings", "preflight"]

LIBRDKAFKA_SETTINGS_URL = "https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md"
TRANSACTION_LOG = "__transaction_state"
_REPLICATION = "transaction.state.log.replication.factor"
_MIN_ISR = "transaction.state.log.min.isr"
# Errors meaning another producer with the preflight's transactional id got in first: the
# cluster ran transactions for it, which is all the check wants to know.
_TRANSACTIONS_WORK = {"PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH", "_FENCED"}
# How long explaining a failure may take on top of the failed step.
_DIAGNOSIS_TIMEOUT_S = 5.0


def preflight(config: WorkerConfig) -> None:
    """Run every startup check; raise `ConfigError` for the first that fails."""
    check_settings(config)
    check_cluster(config)


# --- 1. librdkafka settings -------------------------------------------------------------------


def _around_user_settings(
    client: Client, config: WorkerConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Settings the worker puts before (defaults) and after (its own) the user's, where they
    decide whether librdkafka accepts a combination (a transactional producer must be
    idempotent; a group consumer needs a group id)."""
    if client == "consumer":
        return {}, {"group.id": config.application_id}
    if client == "producer" and config.exactly_once:
        # The worker's exactly-once producer times transactions out after 10 s by default.
        before = {"enable.idempotence": True, "transaction.timeout.ms": 10000}
        return before, {"transactional.id": f"{config.application_id}-preflight"}
    if client == "producer":
        return {"enable.idempotence": True}, {}
    return {}, {}


def check_settings(config: WorkerConfig) -> None:
    """Raise `ConfigError` naming `kafka.<key>` when librdkafka refuses a setting: an unknown
    name, a wrong type or range, a combination it does not allow, a certificate it cannot load.
    Builds clients without bootstrap servers, so it takes a few milliseconds and no network."""
    for client in ("consumer", "producer", "admin"):
        before, after = _around_user_settings(client, config)
        mine = settings_for(client, config.kafka)
        problem = settings_problem(client, {**before, **mine, **after})
        if problem is None:
            continue
        for key, value in sorted(config.kafka.items()):
            alone = settings_for(client, {key: value})
            own_problem = alone and settings_problem(client, {**before, **alone, **after})
            if own_problem:
                raise ConfigError(f"kafka.{key}", _settings_advice(value, own_problem))
        # Refused only together with the others: name the setting librdkafka's message names.
        for key, value in sorted(config.kafka.items()):
            if any(name in problem for name in settings_for(client, {key: value})):
                raise ConfigError(f"kafka.{key}", _settings_advice(value, problem))
        keys = ", ".join(f"kafka.{key}" for key in sorted(config.kafka))
        raise ConfigError(
            "kafka",
            f"librdkafka refuses these settings together for the {client} ({problem}); "
            f"fix the combination of {keys} (see {LIBRDKAFKA_SETTINGS_URL})",
        )


def _settings_advice(value: str, problem: str) -> str:
    if is_unknown_setting(problem):
        return (
            f"librdkafka has no such setting ({problem}); check its spelling against "
            f"{LIBRDKAFKA_SETTINGS_URL}, or remove it"
        )
    return (
        f"librdkafka refuses {value!r} ({problem}); set a value that {LIBRDKAFKA_SETTINGS_URL} "
        "allows, or remove the setting"
    )


# --- 2. the cluster answers ---------------------------------------------------------------------


def check_cluster(config: WorkerConfig) -> None:
    """Raise `ConfigError` when no broker answers within `startup_timeout_ms`, or, under
    exactly_once, when the cluster cannot run transactions."""
    timeout = config.startup_timeout_ms / 1000
    admin = {"bootstrap.servers": config.bootstrap_servers, **settings_for("admin", config.kafka)}
    try:
        cluster = reach_cluster(admin, timeout)
    except ClusterUnreachable as e:
        raise ConfigError("bootstrap_servers", _unreachable(config, timeout, str(e))) from None
    if config.exactly_once:
        _check_transactions(config, admin, cluster, timeout)


def _unreachable(config: WorkerConfig, timeout: float, reason: str) -> str:
    servers = config.bootstrap_servers
    if "Invalid response size" in reason:
        hint = "something other than a Kafka broker (an HTTP server?) answers there; check the port"
    elif any(word in reason.lower() for word in ("ssl", "sasl", "authenticat")):
        hint = "check the kafka.security.protocol, kafka.ssl.* and kafka.sasl.* settings"
    else:
        without_port = any(":" not in s for s in servers.split(",") if s.strip())
        default_port = " (an address without a port means port 9092)" if without_port else ""
        hint = (
            f"check the hosts and ports{default_port}, that the brokers are running and that "
            "this host can reach them, or raise startup_timeout_ms if they are still starting"
        )
    return f"no broker at {servers} answered within {timeout:g} s (last error: {reason}); {hint}"


# --- 3. transactions ----------------------------------------------------------------------------


def _check_transactions(
    config: WorkerConfig, admin: Mapping[str, Any], cluster: Cluster, timeout: float
) -> None:
    brokers = len(cluster.brokers)
    if TRANSACTION_LOG not in cluster.partitions:
        # The first transaction creates the log; when Kafka would refuse to, say so at once.
        replication = _broker_setting(admin, cluster, _REPLICATION, timeout)
        if replication is not None and replication > brokers:
            raise _no_transactions(
                config,
                f"{_REPLICATION}={replication} but the cluster has {_brokers(brokers)}, so the "
                f"transaction log {TRANSACTION_LOG} cannot be created",
                f"set {_REPLICATION} to at most {brokers} on the brokers (or add brokers)",
            )
    before, _ = _around_user_settings("producer", config)
    producer = {
        "bootstrap.servers": config.bootstrap_servers,
        **before,
        **settings_for("producer", config.kafka),
    }
    failure = init_transactions(producer, f"{config.application_id}-preflight", timeout)
    if failure is None or failure.code in _TRANSACTIONS_WORK:
        return
    if failure.code.endswith("AUTHORIZATION_FAILED"):
        reason = f"this client may not use transactional ids ({failure.message})"
        fix = (
            "grant its principal WRITE and DESCRIBE on transactional ids with the prefix "
            f"'{config.application_id}-'"
        )
    elif failure.code == "INVALID_TRANSACTION_TIMEOUT":
        raise _transaction_timeout_refused(config, failure)
    elif failure.code in ("UNSUPPORTED_VERSION", "_UNSUPPORTED_FEATURE"):
        reason, fix = f"the brokers do not support them ({failure.message})", "upgrade the brokers"
    elif failure.code == "_TIMED_OUT":
        reason, fix = _explain_timeout(admin, failure, timeout)
    else:
        reason, fix = failure.message, "check the brokers' logs"
    raise _no_transactions(config, reason, fix)


def _transaction_timeout_refused(config: WorkerConfig, failure: TransactionsFailure) -> ConfigError:
    """The brokers' transaction.max.timeout.ms is below the producer's transaction timeout:
    name the user's setting, or the worker's 10 s default when the user set none."""
    for key, value in sorted(config.kafka.items()):
        if "transaction.timeout.ms" in settings_for("producer", {key: value}):
            return ConfigError(
                f"kafka.{key}",
                f"the brokers at {config.bootstrap_servers} refuse {value!r} ({failure.message});"
                " set it to at most the brokers' transaction.max.timeout.ms",
            )
    return _no_transactions(
        config,
        f"the brokers refuse the default transaction timeout of 10000 ms ({failure.message})",
        "set kafka.transaction.timeout.ms to at most the brokers' transaction.max.timeout.ms",
    )


def _explain_timeout(
    admin: Mapping[str, Any], failure: TransactionsFailure, timeout: float
) -> tuple[str, str]:
    """(why, what to do) when no transaction coordinator answered in time, from the transaction
    log's state as the cluster describes it now."""
    generic = (
        f"no transaction coordinator completed a request within {timeout:g} s ({failure.message})",
        "check the brokers' transaction.state.log.* settings and logs, or raise startup_timeout_ms",
    )
    short_wait = min(timeout, _DIAGNOSIS_TIMEOUT_S)
    try:
        cluster = reach_cluster(admin, short_wait)
    except ClusterUnreachable:
        return generic
    partitions = cluster.partitions.get(TRANSACTION_LOG)
    if not partitions:
        return generic
    of_them = f"of the {len(partitions)} partitions of {TRANSACTION_LOG}"
    leaderless = sum(1 for p in partitions if p.leader < 0)
    if leaderless:
        return f"{leaderless} {of_them} have no leader", "bring back the brokers that hold them"
    min_isr = _broker_setting(admin, cluster, _MIN_ISR, short_wait)
    short = sum(1 for p in partitions if min_isr is not None and p.in_sync < min_isr)
    if short:
        return (
            f"{short} {of_them} have fewer in-sync replicas than {_MIN_ISR}={min_isr}",
            f"lower {_MIN_ISR} to at most the replicas that are in sync, or bring back the "
            "brokers that hold them",
        )
    return generic


def _broker_setting(
    admin: Mapping[str, Any], cluster: Cluster, name: str, timeout: float
) -> int | None:
    """A broker config's value as an integer, or None when it cannot be read."""
    if not cluster.brokers:
        return None
    text = broker_settings(admin, min(cluster.brokers), (name,), timeout).get(name)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _no_transactions(config: WorkerConfig, reason: str, fix: str) -> ConfigError:
    return ConfigError(
        "processing_guarantee",
        f"exactly_once needs Kafka transactions, but the cluster at {config.bootstrap_servers} "
        f"cannot run them: {reason}; {fix}, or use processing_guarantee=at_least_once",
    )


def _brokers(count: int) -> str:
    return f"{count} broker" if count == 1 else f"{count} brokers"
