"""Worker configuration: keyword-only settings, each from a flag or a `PROCESSOR_*` variable.

| setting | flag | environment | default |
| --- | --- | --- | --- |
| bootstrap_servers | --bootstrap-servers | PROCESSOR_BOOTSTRAP_SERVERS | (required) |
| application_id | --application-id | PROCESSOR_APPLICATION_ID | the topology's name |
| instance_id | --instance-id | PROCESSOR_INSTANCE_ID | generated once, kept in the state dir |
| state_dir | --state-dir | PROCESSOR_STATE_DIR | `<tmp>/processor` |
| processing_guarantee | --processing-guarantee | PROCESSOR_PROCESSING_GUARANTEE | at_least_once |
| commit_interval_ms | --commit-interval-ms | PROCESSOR_COMMIT_INTERVAL_MS | 1000 |
| static_membership | --static-membership | PROCESSOR_STATIC_MEMBERSHIP | false |
| assignment_balance_factor | --assignment-balance-factor | PROCESSOR_ASSIGNMENT_... | 1.0 |
| assignment_load_aware | --assignment-load-aware | PROCESSOR_ASSIGNMENT_LOAD_AWARE | false |
| load_balance_{interval_ms,max_moves,threshold} | --load-balance-... | ... | 30000, 8, 0.25 |
| consume_batch_size | --consume-batch-size | PROCESSOR_CONSUME_BATCH_SIZE | 1000 |
| async_max_in_flight | --async-max-in-flight | PROCESSOR_ASYNC_MAX_IN_FLIGHT | 1000 |
| store_cache_bytes | --store-cache-bytes | PROCESSOR_STORE_CACHE_BYTES | 64 MiB (67108864) |
| num_standby_replicas | --num-standby-replicas | PROCESSOR_NUM_STANDBY_REPLICAS | 0 |
| acceptable_recovery_lag | --acceptable-recovery-lag | PROCESSOR_ACCEPTABLE_RECOVERY_LAG | 10000 |
| max_warmup_time_ms | --max-warmup-time-ms | PROCESSOR_MAX_WARMUP_TIME_MS | 300000 |
| state_cleanup_delay_ms | --state-cleanup-delay-ms | PROCESSOR_STATE_CLEANUP_DELAY_MS | 600000 |
| http_host | --http-host | PROCESSOR_HTTP_HOST | 127.0.0.1 |
| http_port | --http-port | PROCESSOR_HTTP_PORT | 0 (any free port); empty: no HTTP server |
| http_token | --http-token | PROCESSOR_HTTP_TOKEN | none (no authentication) |
| query_timeout_ms | --query-timeout-ms | PROCESSOR_QUERY_TIMEOUT_MS | 5000 |
| query_max_requests | --query-max-requests | PROCESSOR_QUERY_MAX_REQUESTS | 8 |
| query_max_forwards | --query-max-forwards | PROCESSOR_QUERY_MAX_FORWARDS | 4 |
| deserialization_error_handler | --deserialization-error-handler | PROCESSOR_DESER... | fail |
| processing_error_handler | --processing-error-handler | PROCESSOR_PROCESSING_ERR... | fail |
| production_error_handler | --production-error-handler | PROCESSOR_PRODUCTION_ERR... | fail |
| late_record_handler | --late-record-handler | PROCESSOR_LATE_RECORD_HANDLER | skip |
| dead_letter_topic | --dead-letter-topic | PROCESSOR_DEAD_LETTER_TOPIC | `<app id>-dead-letters` |
| idle_advance_ms | --idle-advance-ms | PROCESSOR_IDLE_ADVANCE_MS | 0 (off) |
| max_task_idle_ms | --max-task-idle-ms | PROCESSOR_MAX_TASK_IDLE_MS | 0 (-1: never wait) |
| processing_retry_attempts | --processing-retry-attempts | PROCESSOR_PROCESSING_RE... | 3 |
| processing_retry_backoff_ms | --processing-retry-backoff-ms | PROCESSOR_PROCESSING_RE... | 100 |
| processing_retry_max_backoff_ms | --processing-retry-max-backoff-ms | PROCESSOR_PROC... | 1000 |
| startup_timeout_ms | --startup-timeout-ms | PROCESSOR_STARTUP_TIMEOUT_MS | 30000 |
| kafka (librdkafka settings) | --kafka KEY=VALUE | PROCESSOR_KAFKA_<KEY> (`_` for `.`) | none |

Sizes in bytes (`store_cache_bytes`) are integers, optionally with a unit: `67108864`, `64MiB`,
`512KiB`, `1GiB` (powers of 1024) or `64MB`, `500kB` (powers of 1000); no unit or `B`: bytes.
`store_cache_size` (changed keys per store) was replaced by `store_cache_bytes`; setting it is
an error that says so.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path

from processor.config_values import (
    _bootstrap_problem,
    _parse_bool,
    _parse_number,
    parse_kafka_pairs,
    parse_size,
)
from processor.errors import ConfigError
from processor.state.budget import DEFAULT_STORE_CACHE_BYTES
from processor.topology.handling import ErrorHandler


class ProcessingGuarantee(Enum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


# librdkafka settings the worker owns: letting a user override them would break the protocol.
RESERVED_KAFKA_SETTINGS = {
    "group.id": "application_id",
    "client.id": "instance_id",
    "group.instance.id": "static_membership",
    "enable.auto.commit": "processing_guarantee (offsets are committed by the worker)",
    "enable.auto.offset.store": "processing_guarantee (offsets are committed by the worker)",
    "partition.assignment.strategy": "(tasks are assigned by the worker, see ARCHITECTURE.md)",
    "transactional.id": "processing_guarantee",
    "isolation.level": "processing_guarantee",
    "bootstrap.servers": "bootstrap_servers",
}


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    bootstrap_servers: str
    application_id: str
    instance_id: str | None = None
    state_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "processor")
    processing_guarantee: ProcessingGuarantee = ProcessingGuarantee.AT_LEAST_ONCE
    # At-least-once replays at most this much work after a crash; one second keeps the replay
    # small while a commit (one flush plus one offset commit) costs a few milliseconds.
    commit_interval_ms: int = 1000
    static_membership: bool = False
    assignment_balance_factor: float = 1.0
    # Weigh tasks by measured load: processor.runtime.load_balancer explains these defaults.
    assignment_load_aware: bool = False
    load_balance_interval_ms: int = 30_000
    load_balance_max_moves: int = 8
    load_balance_threshold: float = 0.25
    consume_batch_size: int = 1000
    # Calls of async operators (`map_values_async`, ...) running at once on this worker, all
    # tasks together; each operator's `concurrency` bounds its task's share.
    async_max_in_flight: int = 1000
    # Bytes the stores' write-back caches of this worker may hold, all tasks and stores
    # together (processor.state.budget): changes not yet committed may fill all of it, then the
    # worker commits early; recently read entries use what they leave and give way first. A hot
    # key updated many times in one interval still costs one changelog record.
    store_cache_bytes: int = DEFAULT_STORE_CACHE_BYTES
    # Warm copies of each stateful task on other workers, so that a failover reads only the
    # changelog tail. 0 like Kafka Streams; 1 when failover must not wait for a full restore.
    num_standby_replicas: int = 0
    # A task may move to a worker whose copy is at most this many changelog records behind
    # (Kafka Streams' default); a joining worker waits until its future tasks are this close.
    acceptable_recovery_lag: int = 10_000
    # A joining worker joins after this long even when some copies are not caught up yet.
    max_warmup_time_ms: int = 300_000
    # A task directory neither active nor standby here is deleted after this long (Kafka
    # Streams' state.cleanup.delay.ms): a task that comes back sooner finds its state warm.
    state_cleanup_delay_ms: int = 600_000
    # The query API and /metrics are served on http_host:http_port (0: any free port, published
    # on the metadata topic; None: no HTTP server). With http_token every request needs
    # `Authorization: Bearer <token>`.
    http_host: str = "127.0.0.1"
    http_port: int | None = 0
    http_token: str | None = None
    # Bounds on the query API (processor.query.limits); a request over one is refused at once
    # with 503 and Retry-After. The time one query may take, every forward it makes included:
    # under QueryClient's 10 s timeout, so that a client hears why, and far above what a
    # 10,000-key forward takes (tens of milliseconds).
    query_timeout_ms: int = 5000
    # Reads of store contents served at once. A worker is one Python process: more reads at
    # once do not finish sooner, they only make every other request (/metrics, the listing,
    # the event loop itself) wait longer for the interpreter; well under the 40 threads the
    # HTTP server runs handlers on, so that metadata and lag always find one.
    query_max_requests: int = 8
    # Forwards to other instances in flight at once: half the reads, so that a hung instance
    # (each forward to it waits out its deadline) holds at most half of them; at most half of
    # these wait on any one instance.
    query_max_forwards: int = 4
    # What happens to a record that cannot be deserialized (or lacks a key a keyed operator
    # needs), whose user function raises, or whose output the broker refuses: fail (stop, the
    # offset uncommitted), skip (log line + metric) or dead_letter (to `dead_letter_topic`,
    # default `<application_id>-dead-letters`, with headers naming the error and the origin).
    deserialization_error_handler: ErrorHandler = ErrorHandler.FAIL
    processing_error_handler: ErrorHandler = ErrorHandler.FAIL
    production_error_handler: ErrorHandler = ErrorHandler.FAIL
    # A record whose windows have all closed: skip (counted as late, no log line per record),
    # dead_letter (with stage `late`) or fail.
    late_record_handler: ErrorHandler = ErrorHandler.SKIP
    dead_letter_topic: str | None = None
    # Windows of a task that had no input for this long (wall-clock ms) close anyway: its stream
    # time then advances with the wall clock (processor.topology.clock). 0: off. Every worker of
    # an application must use the same value (it is part of the fingerprint they agree on).
    idle_advance_ms: int = 0
    # A task with several inputs (a stream-table join, a merge) processes the buffered record
    # with the lowest timestamp first; an input with no buffered record is waited for while
    # records are known to be on the broker, and then this long (wall-clock ms) for new ones
    # (processor.topology.partition_group). 0: Kafka Streams' default; -1: never wait.
    max_task_idle_ms: int = 0
    # A user function raising processor.TransientError is called again this many times,
    # waiting backoff_ms, doubling up to max_backoff_ms, before the processing handler sees it.
    processing_retry_attempts: int = 3
    processing_retry_backoff_ms: int = 100
    processing_retry_max_backoff_ms: int = 1000
    # Startup checks (processor.runtime.preflight) wait this long for a broker to answer, and
    # under exactly_once for the first transaction to initialise, then fail naming the cause.
    # 30 s like Quix Streams' request_timeout and the Java clients' request.timeout.ms: a broker
    # started alongside the workers (docker compose) is up by then, and a wrong address shows
    # within half a minute instead of hanging.
    startup_timeout_ms: int = 30_000
    kafka: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_names()
        self._check_numbers()
        self._check_http_and_kafka()

    def _check_names(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError(
                "bootstrap_servers",
                "is missing; pass --bootstrap-servers HOST:PORT or set PROCESSOR_BOOTSTRAP_SERVERS",
            )
        bootstrap_problem = _bootstrap_problem(self.bootstrap_servers)
        if bootstrap_problem:
            raise ConfigError("bootstrap_servers", bootstrap_problem)
        if self.startup_timeout_ms <= 0:
            raise ConfigError(
                "startup_timeout_ms", f"must be positive, got {self.startup_timeout_ms}"
            )
        if not self.application_id or not all(
            (c.isascii() and c.isalnum()) or c in "._-" for c in self.application_id
        ):
            raise ConfigError(
                "application_id",
                f"{self.application_id!r} must be non-empty and use only ASCII letters, "
                "digits, '.', '_' and '-'",
            )
        if self.instance_id is not None and not self.instance_id.strip():
            raise ConfigError("instance_id", "is empty; leave it unset to generate one")

    def _check_numbers(self) -> None:
        if self.commit_interval_ms <= 0:
            raise ConfigError(
                "commit_interval_ms", f"must be positive, got {self.commit_interval_ms}"
            )
        if self.idle_advance_ms < 0:
            raise ConfigError(
                "idle_advance_ms", f"must be 0 (off) or positive, got {self.idle_advance_ms}"
            )
        if self.max_task_idle_ms < -1:
            raise ConfigError(
                "max_task_idle_ms",
                f"must be -1 (never wait), 0 or positive, got {self.max_task_idle_ms}",
            )
        if self.store_cache_bytes <= 0:
            raise ConfigError(
                "store_cache_bytes", f"must be positive, got {self.store_cache_bytes}"
            )
        if self.consume_batch_size <= 0:
            raise ConfigError(
                "consume_batch_size", f"must be positive, got {self.consume_batch_size}"
            )
        if self.async_max_in_flight <= 0:
            raise ConfigError(
                "async_max_in_flight", f"must be positive, got {self.async_max_in_flight}"
            )
        positive = ("query_timeout_ms", "query_max_requests", "query_max_forwards")
        for name in (*positive, "load_balance_interval_ms", "load_balance_max_moves"):
            if getattr(self, name) <= 0:
                raise ConfigError(name, f"must be positive, got {getattr(self, name)}")
        for name in (
            "num_standby_replicas",
            "acceptable_recovery_lag",
            "max_warmup_time_ms",
            "state_cleanup_delay_ms",
            "processing_retry_attempts",
            "processing_retry_backoff_ms",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be 0 or more, got {getattr(self, name)}")
        if not 0 < self.load_balance_threshold < 100:  # also rejects NaN
            raise ConfigError(
                "load_balance_threshold",
                f"must be above 0 and below 100, got {self.load_balance_threshold}",
            )
        if self.processing_retry_max_backoff_ms < self.processing_retry_backoff_ms:
            raise ConfigError(
                "processing_retry_max_backoff_ms",
                f"must be at least processing_retry_backoff_ms ({self.processing_retry_backoff_ms})"
                f", got {self.processing_retry_max_backoff_ms}",
            )

    def _check_http_and_kafka(self) -> None:
        if self.dead_letter_topic is not None and not _is_topic_name(self.dead_letter_topic):
            raise ConfigError(
                "dead_letter_topic",
                f"{self.dead_letter_topic!r} is not a valid topic name (1-249 of ASCII letters, "
                "digits, '.', '_' and '-')",
            )
        if self.http_token is not None and (
            not self.http_token.strip() or any(c.isspace() for c in self.http_token)
        ):
            raise ConfigError("http_token", "must be non-empty and contain no whitespace")
        if self.http_port is not None and not 0 <= self.http_port <= 65535:
            raise ConfigError(
                "http_port",
                f"must be a port number 0..65535 (0: any free port), got {self.http_port}",
            )
        if not self.assignment_balance_factor >= 1.0:  # also rejects NaN
            raise ConfigError(
                "assignment_balance_factor",
                "must be at least 1.0 (1.0 = as even as possible), "
                f"got {self.assignment_balance_factor}",
            )
        for key in self.kafka:
            prefix, _, rest = key.partition(".")
            bare = rest if prefix in ("consumer", "producer", "admin") and rest else key
            if bare in RESERVED_KAFKA_SETTINGS:
                raise ConfigError(
                    f"kafka.{key}",
                    f"is set by the worker; use {RESERVED_KAFKA_SETTINGS[bare]} instead",
                )

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee is ProcessingGuarantee.EXACTLY_ONCE

    @property
    def coordination_topic(self) -> str:
        return coordination_topic(self.application_id)

    @property
    def dead_letters(self) -> str:
        """The dead-letter topic."""
        return self.dead_letter_topic or f"{self.application_id}-dead-letters"

    @property
    def metadata_topic(self) -> str:
        return metadata_topic(self.application_id)

    @property
    def app_state_dir(self) -> Path:
        return self.state_dir / self.application_id


def coordination_topic(application_id: str) -> str:
    """The topic whose consumer group the workers of `application_id` coordinate through."""
    return f"{application_id}-coordination"


def metadata_topic(application_id: str) -> str:
    """The compacted topic of the instances' statuses (`processor.status.record`)."""
    return f"{application_id}-metadata"


SETTINGS = tuple(f.name for f in fields(WorkerConfig) if f.name != "kafka")
# Settings that no longer exist: naming one (flag or environment) is an error saying what to use.
REPLACED_SETTINGS = {
    "store_cache_size": "was replaced by store_cache_bytes (a byte budget per worker, default "
    "64 MiB); use --store-cache-bytes or PROCESSOR_STORE_CACHE_BYTES",
}
ENV_PREFIX = "PROCESSOR_"
KAFKA_ENV_PREFIX = "PROCESSOR_KAFKA_"
# `PROCESSOR_*` variables read elsewhere: the CLI's log level and format, the test broker's jar
# cache and the test suite's broker address. They are neither settings nor librdkafka settings.
OTHER_ENVIRONMENT = {
    "PROCESSOR_LOG_LEVEL",
    "PROCESSOR_LOG_FORMAT",
    "PROCESSOR_KAFKA_CACHE",
    "PROCESSOR_TEST_BOOTSTRAP",
}


def _is_topic_name(name: str) -> bool:
    return (
        0 < len(name) < 250
        and name not in (".", "..")
        and all((c.isascii() and c.isalnum()) or c in "._-" for c in name)
    )


def load(
    *,
    flags: Mapping[str, str | None],
    kafka_pairs: list[str],
    environ: Mapping[str, str] = os.environ,
    default_application_id: str,
) -> WorkerConfig:
    """Merge flags over `PROCESSOR_*` variables over defaults; validate. Flags use setting names."""
    _refuse_replaced(flags, environ)
    raw = _raw_settings(flags, environ)
    kwargs: dict[str, object] = {
        "bootstrap_servers": raw.get("bootstrap_servers", ""),
        "application_id": raw.get("application_id", default_application_id),
        "instance_id": raw.get("instance_id") or None,
        "processing_guarantee": _guarantee(raw),
        "kafka": _kafka_settings(environ, kafka_pairs),
    }
    if "state_dir" in raw:
        kwargs["state_dir"] = Path(raw["state_dir"])
    kwargs.update(_numbers(raw))
    if raw.get("store_cache_bytes", "").strip():
        kwargs["store_cache_bytes"] = parse_size("store_cache_bytes", raw["store_cache_bytes"])
    if "http_port" in raw and raw["http_port"].strip().lower() in ("", "off", "none"):
        kwargs["http_port"] = None
    if raw.get("http_token"):
        kwargs["http_token"] = raw["http_token"]
    if "http_host" in raw:
        kwargs["http_host"] = raw["http_host"]
    kwargs.update(_handlers(raw))
    if raw.get("dead_letter_topic", "").strip():
        kwargs["dead_letter_topic"] = raw["dead_letter_topic"].strip()
    for switch in ("static_membership", "assignment_load_aware"):
        if switch in raw:
            kwargs[switch] = _parse_bool(switch, raw[switch])
    return WorkerConfig(**kwargs)  # type: ignore[arg-type]


def _refuse_replaced(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> None:
    for setting, problem in REPLACED_SETTINGS.items():
        if flags.get(setting) is not None:
            raise ConfigError(setting, problem)
        if ENV_PREFIX + setting.upper() in environ:
            raise ConfigError(ENV_PREFIX + setting.upper(), problem)


def _raw_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> dict[str, str]:
    """Each setting's text: its flag, else its `PROCESSOR_*` variable, when either is given."""
    raw: dict[str, str] = {}
    for setting in SETTINGS:
        env_value = environ.get(ENV_PREFIX + setting.upper())
        if env_value is not None:
            raw[setting] = env_value
        flag_value = flags.get(setting)
        if flag_value is not None:
            raw[setting] = flag_value
    return raw


def _kafka_settings(environ: Mapping[str, str], kafka_pairs: list[str]) -> dict[str, str]:
    """librdkafka settings: `PROCESSOR_KAFKA_<KEY>` variables, then `--kafka KEY=VALUE` pairs."""
    kafka: dict[str, str] = {}
    for name, value in environ.items():
        if (
            name.startswith(KAFKA_ENV_PREFIX)
            and len(name) > len(KAFKA_ENV_PREFIX)
            and name not in OTHER_ENVIRONMENT
        ):
            kafka[name[len(KAFKA_ENV_PREFIX) :].lower().replace("_", ".")] = value
    kafka.update(parse_kafka_pairs(kafka_pairs))
    return kafka


def _guarantee(raw: Mapping[str, str]) -> ProcessingGuarantee:
    text = raw.get("processing_guarantee", ProcessingGuarantee.AT_LEAST_ONCE.value)
    try:
        return ProcessingGuarantee(text.strip().lower())
    except ValueError:
        choices = ", ".join(g.value for g in ProcessingGuarantee)
        raise ConfigError("processing_guarantee", f"{text!r} is not one of {choices}") from None


_NUMBERS: tuple[tuple[str, type[int] | type[float]], ...] = (
    ("commit_interval_ms", int),
    ("idle_advance_ms", int),
    ("max_task_idle_ms", int),
    ("consume_batch_size", int),
    ("async_max_in_flight", int),
    ("assignment_balance_factor", float),
    ("load_balance_interval_ms", int),
    ("load_balance_max_moves", int),
    ("load_balance_threshold", float),
    ("num_standby_replicas", int),
    ("acceptable_recovery_lag", int),
    ("max_warmup_time_ms", int),
    ("state_cleanup_delay_ms", int),
    ("http_port", int),
    ("query_timeout_ms", int),
    ("query_max_requests", int),
    ("query_max_forwards", int),
    ("startup_timeout_ms", int),
    ("processing_retry_attempts", int),
    ("processing_retry_backoff_ms", int),
    ("processing_retry_max_backoff_ms", int),
)


def _numbers(raw: Mapping[str, str]) -> dict[str, int | float]:
    found: dict[str, int | float] = {}
    for setting, kind in _NUMBERS:
        if setting == "http_port" and raw.get(setting, "").strip().lower() in ("off", "none"):
            continue  # no HTTP server
        if setting in raw and raw[setting].strip():
            found[setting] = _parse_number(setting, raw[setting], kind)
    return found


def _handlers(raw: Mapping[str, str]) -> dict[str, ErrorHandler]:
    found: dict[str, ErrorHandler] = {}
    for setting in (
        "deserialization_error_handler",
        "processing_error_handler",
        "production_error_handler",
        "late_record_handler",
    ):
        if raw.get(setting, "").strip():
            try:
                found[setting] = ErrorHandler.parse(raw[setting])
            except ValueError as e:
                raise ConfigError(setting, str(e)) from None
    return found


def unknown_environment_settings(environ: Mapping[str, str] = os.environ) -> list[str]:
    """`PROCESSOR_*` variables that name no setting: most likely typos."""
    known = {ENV_PREFIX + s.upper() for s in SETTINGS} | OTHER_ENVIRONMENT
    return sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX)
        and not name.startswith(KAFKA_ENV_PREFIX)
        and name not in known
    )


def check_environment(environ: Mapping[str, str] = os.environ) -> None:
    """Raise ConfigError for the first `PROCESSOR_*` variable that names no setting (saying
    what to use instead when it names a replaced one)."""
    unknown = unknown_environment_settings(environ)
    for name in unknown:
        problem = REPLACED_SETTINGS.get(name[len(ENV_PREFIX) :].lower())
        if problem is not None:
            raise ConfigError(name, problem)
    if unknown:
        raise ConfigError(unknown[0], "is not a setting; see `processor run --help` for the list")
