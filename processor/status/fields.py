"""Checks of the fields of a status read from `<application_id>-metadata`
(`processor.status.record`), and the error they raise.

Each check takes one parsed JSON value and looks one level deep, no further: a value nested
where the format has no nesting is refused for its type, never walked. Every limit below is far
above what a real status holds; together with `MAX_STATUS_BYTES` they bound what one record
costs to read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import Enum
from urllib.parse import urlsplit

from processor.errors import ProcessorError

__all__ = [
    "MAX_STATUS_BYTES",
    "IgnoredReason",
    "InvalidStatusError",
    "check_size",
    "endpoint",
    "instance_name",
    "integer",
    "invalid",
    "kind",
    "lags",
    "names",
    "task_ids",
    "task_integers",
    "task_rates",
    "text",
]

# A status costs about 31 bytes per task held (its id in a list or two, and its lag): one of a
# worker holding 20,000 tasks, all restoring, with 7-digit lags and 50 members, is 0.65 MB. The
# producer's default message.max.bytes (1,000,000) keeps real statuses below this anyway.
MAX_STATUS_BYTES = 1 << 20
MAX_NAME_CHARS = 1_000  # an instance id: any non-empty text a user configures
MAX_MEMBERS = 10_000
_MAX_ENDPOINT_CHARS = 2_048
_MAX_TASKS = 100_000  # per list; the byte limit binds first
_MAX_INT = 2**63 - 1  # a Kafka offset difference, a pid, milliseconds since the epoch
_MAX_RATE = 1e12  # records/s: far above any partition (also refuses infinity)
_TASK_ID = re.compile(r"[0-9]{1,9}_[0-9]{1,9}")


class IgnoredReason(Enum):
    """Why a record of the metadata topic was ignored (the label of
    `processor_metadata_records_ignored_total`)."""

    TOO_LARGE = "too_large"  # over MAX_STATUS_BYTES, or a key too long to be an instance id
    NOT_JSON = "not_json"  # not UTF-8 JSON, or nested deeper than the parser goes
    INVALID = "invalid"  # no key; a field missing, of the wrong type or out of range
    KEY_MISMATCH = "key_mismatch"  # the record key is not the status's instance id
    CLOCK_AHEAD = "clock_ahead"  # dated too far ahead of the reader's clock
    UNSIGNED = "unsigned"  # an HTTP token is set and the record carries no signature
    BAD_SIGNATURE = "bad_signature"  # an HTTP token is set and the signature does not verify


class InvalidStatusError(ProcessorError):
    """A record of the metadata topic is not a status this worker can use. Never leaves
    `StatusBoard.apply`, which ignores the record."""

    def __init__(self, reason: IgnoredReason, problem: str) -> None:
        self.reason = reason
        self.problem = problem
        super().__init__(problem)


def invalid(problem: str) -> InvalidStatusError:
    return InvalidStatusError(IgnoredReason.INVALID, problem)


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_STATUS_BYTES:
        raise InvalidStatusError(
            IgnoredReason.TOO_LARGE, f"{len(raw)} bytes, over the {MAX_STATUS_BYTES} allowed"
        )


def kind(value: object) -> str:
    """A JSON value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def text(value: object, where: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise invalid(f"{where} must be a string, not {kind(value)}")
    if len(value) > max_chars:
        raise invalid(f"{where} is {len(value)} characters long, over {max_chars}")
    return value


def instance_name(value: object, where: str) -> str:
    name = text(value, where, MAX_NAME_CHARS)
    if not name or not name.isprintable():
        raise invalid(f"{where} {name[:100]!r} is not an instance id")
    return name


def _task_id(value: object, where: str) -> str:
    task = text(value, where, 19)
    if not _TASK_ID.fullmatch(task):
        raise invalid(f"{where} {task!r} is not a task id (<subtopology>_<partition>)")
    return task


def integer(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(f"{where} must be an integer, not {kind(value)}")
    if not 0 <= value <= _MAX_INT:
        raise invalid(f"{where} {value} is out of range (0 to 2^63-1)")
    return value


def endpoint(value: object) -> str | None:
    """None, or where forwarded queries go: `http(s)://host:port`, nothing more."""
    if value is None:
        return None
    url = text(value, "endpoint", _MAX_ENDPOINT_CHARS)
    if not _is_host_port_url(url):
        raise invalid(f"endpoint {url[:200]!r} is not an http(s)://host:port URL")
    return url


def _is_host_port_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises unless a number from 0 to 65535
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and port is not None
        and port > 0
        and parts.username is None
        and parts.password is None
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
        and url.isprintable()
        and " " not in url
    )


def _items(
    value: object, where: str, max_items: int, item: Callable[[object, str], str]
) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise invalid(f"{where} must be a list, not {kind(value)}")
    if len(value) > max_items:
        raise invalid(f"{where} has {len(value)} items, over {max_items}")
    return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))


def names(value: object, where: str) -> tuple[str, ...]:
    """A list of instance ids."""
    return _items(value, where, MAX_MEMBERS, instance_name)


def task_ids(value: object, where: str) -> tuple[str, ...]:
    """A list of task ids, `<subtopology>_<partition>`."""
    return _items(value, where, _MAX_TASKS, _task_id)


def lags(value: object) -> dict[str, int]:
    """An object of task ids to changelog records behind."""
    return task_integers(value, "lags", "lags")


def task_integers(value: object, where: str, what: str) -> dict[str, int]:
    """An object of task ids to integers (0 to 2^63-1); `what` names the integers."""
    if not isinstance(value, dict):
        raise invalid(f"{where} must be an object of task ids to {what}, not {kind(value)}")
    if len(value) > _MAX_TASKS:
        raise invalid(f"{where} has {len(value)} tasks, over {_MAX_TASKS}")
    return {_task_id(k, f"{where} key"): integer(v, f"{where}[{k!r}]") for k, v in value.items()}


def task_rates(value: object) -> dict[str, float]:
    """An object of task ids to records per second: finite numbers from 0 to `_MAX_RATE`."""
    if not isinstance(value, dict):
        raise invalid(f"task_rates must be an object of task ids to records/s, not {kind(value)}")
    if len(value) > _MAX_TASKS:
        raise invalid(f"task_rates has {len(value)} tasks, over {_MAX_TASKS}")
    rates = {}
    for k, v in value.items():
        task = _task_id(k, "task_rates key")
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise invalid(f"task_rates[{task!r}] must be a number, not {kind(v)}")
        if not 0 <= v <= _MAX_RATE:  # also refuses NaN
            raise invalid(f"task_rates[{task!r}] {v} is out of range (0 to {_MAX_RATE:.0e})")
        rates[task] = float(v)
    return rates
