"""Retrying a user function that raised an error marked transient, with exponential backoff.

A user marks an error transient by raising `processor.TransientError` (or a subclass), or by
listing exception types in an operator's `Retry(on=...)`. Other errors are not retried: they go
straight to the processing error handler. The retry runs the failing function again, not the
whole record, so outputs already forwarded by earlier operators are not repeated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from processor.errors import ConfigError, TransientError
from processor.topology.record import RecordContext

log = logging.getLogger("processor.retry")


@dataclass(frozen=True)
class Retry:
    """Up to `attempts` retries after the first call fails with one of `on`, waiting
    `backoff_ms`, then twice as long each time, at most `max_backoff_ms`."""

    attempts: int = 3
    backoff_ms: int = 100
    max_backoff_ms: int = 1000
    on: tuple[type[BaseException], ...] = (TransientError,)

    def __post_init__(self) -> None:
        if self.attempts < 0:
            raise ConfigError("retry.attempts", f"must be 0 or more, got {self.attempts}")
        if self.backoff_ms < 0 or self.max_backoff_ms < self.backoff_ms:
            raise ConfigError(
                "retry.backoff_ms",
                f"must be 0 or more and at most max_backoff_ms, got {self.backoff_ms} "
                f"(max_backoff_ms {self.max_backoff_ms})",
            )
        if not self.on or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.on
        ):
            raise ConfigError("retry.on", f"must be exception types, got {self.on!r}")

    def delay_ms(self, retry: int) -> int:
        """How long to wait before retry number `retry` (1-based)."""
        return int(min(self.max_backoff_ms, self.backoff_ms * 2 ** min(retry - 1, 62)))


def call_again(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    error: BaseException,
    policy: Retry,
    operator: str,
    record: RecordContext,
) -> Any:
    """`function(*args)` raised `error`, one of `policy.on`: wait and call it again, up to
    `policy.attempts` times; raises the last error when it never succeeds."""
    for retry in range(1, policy.attempts + 1):
        delay = policy.delay_ms(retry)
        log.warning(
            "operator %r raised %s on record %s[%d]@%d: %s; retry %d of %d in %d ms",
            operator,
            type(error).__name__,
            record.topic,
            record.partition,
            record.offset,
            error,
            retry,
            policy.attempts,
            delay,
        )
        time.sleep(delay / 1000)
        try:
            return function(*args)
        except policy.on as e:
            error = e
    raise error
