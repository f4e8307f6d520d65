"""The `--help` line of each worker setting: what it does, its default, its environment variable.

The defaults are read from `WorkerConfig` itself, so the help cannot drift from what the worker
does; only the settings whose default is not a plain value (required, derived from another
setting, generated) spell it out here.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from enum import Enum

from processor.config import ENV_PREFIX, WorkerConfig

__all__ = ["setting_help", "setting_metavar"]

# What each setting does, in a few words; its default and variable are appended.
_PURPOSE = {
    "bootstrap_servers": "the Kafka cluster: HOST:PORT[,HOST:PORT...]",
    "application_id": "the application this worker joins: its consumer group and the prefix "
    "of its internal topics",
    "instance_id": "this worker's stable identity; a restarted worker with the same id gets "
    "its tasks back",
    "state_dir": "where the stores of this worker's tasks live (one directory per worker; it "
    "is locked)",
    "processing_guarantee": "at_least_once or exactly_once (Kafka transactions)",
    "commit_interval_ms": "how often offsets, outputs and state are committed; at-least-once "
    "replays at most about this much input after a crash",
    "static_membership": "keep the group membership across a restart within the session "
    "timeout, so that it causes no rebalance",
    "assignment_balance_factor": "how uneven task counts per worker may be (1.0: differ by at "
    "most one task)",
    "assignment_load_aware": "weigh tasks by the records/s they receive, so that no worker is "
    "overloaded while others idle (every worker the same)",
    "load_balance_interval_ms": "with load-aware assignment: how long an imbalance must last, "
    "and the least time between two re-plans",
    "load_balance_max_moves": "with load-aware assignment: tasks one re-plan may move (8: "
    "enough for the light tasks that make room for one task of the largest weight)",
    "load_balance_threshold": "with load-aware assignment: re-plan when the busiest worker "
    "carries this much more than the mean (0.25: 25%)",
    "consume_batch_size": "records read from the broker per poll",
    "async_max_in_flight": "calls of async operators running at once on this worker, all "
    "operators together",
    "store_cache_bytes": "memory for the stores' write-back caches of this worker, all tasks "
    "together: bytes, or with a unit (512KiB, 1GiB, 64MB); uncommitted changes may fill it, "
    "then the worker commits early",
    "num_standby_replicas": "warm copies of each stateful task on other workers, so that a "
    "failover reads only the changelog tail",
    "acceptable_recovery_lag": "a task moves to a worker whose copy is at most this many "
    "changelog records behind; a joining worker warms up until its tasks are this close",
    "max_warmup_time_ms": "a joining worker joins after this long even if not caught up",
    "state_cleanup_delay_ms": "a task directory neither active nor standby here is deleted "
    "after this long",
    "http_host": "the address the query API, /metrics and /health/* listen on",
    "http_port": "their port (0: any free port; off: no HTTP server)",
    "http_token": "require 'Authorization: Bearer TOKEN' on every request but /health/*",
    "query_timeout_ms": "time one query may take, its forwards included",
    "query_max_requests": "reads of store contents served at once; more get 503",
    "query_max_forwards": "queries forwarded to other workers at once; more get 503",
    "deserialization_error_handler": "a record that cannot be deserialized: fail, skip or "
    "dead_letter",
    "processing_error_handler": "a record whose user function raises: fail, skip or dead_letter",
    "production_error_handler": "an output the broker refuses: fail, skip or dead_letter",
    "late_record_handler": "a record whose windows have all closed: skip (counted as late), "
    "dead_letter or fail",
    "dead_letter_topic": "where dead_letter handlers send records",
    "idle_advance_ms": "a task with no input for this long has its stream time follow the "
    "wall clock, so its windows close (0: off; the same on every worker)",
    "max_task_idle_ms": "a task reading several topics (a join, a merge) waits this long for an "
    "input with no buffered record while records are known to be on the broker (-1: never)",
    "processing_retry_attempts": "retries of a user function raising TransientError",
    "processing_retry_backoff_ms": "wait before the first retry; it doubles on each",
    "processing_retry_max_backoff_ms": "the longest wait between retries",
    "startup_timeout_ms": "how long startup checks wait for the broker (and a first "
    "transaction) before failing",
}

# Defaults that are not a plain value of WorkerConfig.
_DEFAULT_TEXT = {
    "bootstrap_servers": "none, required",
    "application_id": "the topology's name",
    "instance_id": "generated once, kept in the state dir",
    "http_token": "none, no authentication",
    "dead_letter_topic": "<application_id>-dead-letters",
}
_METAVARS = {
    "bootstrap_servers": "HOST:PORT",
    "application_id": "ID",
    "instance_id": "ID",
    "state_dir": "DIR",
    "assignment_balance_factor": "FACTOR",
    "load_balance_threshold": "FRACTION",
    "http_host": "HOST",
    "http_port": "PORT",
    "http_token": "TOKEN",
    "dead_letter_topic": "TOPIC",
}
# Settings in bytes, shown with the largest binary unit that divides them.
_SIZES = {"store_cache_bytes"}


def _default(setting: str) -> str:
    if setting in _DEFAULT_TEXT:
        return _DEFAULT_TEXT[setting]
    (field,) = [f for f in fields(WorkerConfig) if f.name == setting]
    if field.default_factory is not MISSING:
        value: object = field.default_factory()
    else:
        value = field.default
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if setting in _SIZES and isinstance(value, int):
        return _size_text(value)
    return str(value)


def _size_text(size: int) -> str:
    """67108864 -> 64MiB, in the units `parse_size` reads."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def setting_help(setting: str) -> str:
    """`purpose (default: D; PROCESSOR_SETTING)`, escaped for argparse."""
    text = f"{_PURPOSE[setting]} (default: {_default(setting)}; {ENV_PREFIX}{setting.upper()})"
    return text.replace("%", "%%")


def setting_metavar(setting: str) -> str:
    """What the flag's value is, for the usage line: MS, N, SIZE, HANDLER, ..."""
    if setting in _METAVARS:
        return _METAVARS[setting]
    (field,) = [f for f in fields(WorkerConfig) if f.name == setting]
    if setting.endswith("_ms"):
        return "MS"
    if setting in _SIZES:
        return "SIZE"
    if setting.endswith("_handler"):
        return "HANDLER"
    if field.type in ("int", int):
        return "N"
    return setting.upper()
