"""Bounds on the work one query can cause, so that the query API cannot be turned into an
amplifier: one request fanning out into thousands, or a hung instance tying up every thread.

Per request:
- at most `MAX_KEYS` keys in one `POST /v1/stores/{store}/keys` (413 beyond: split the keys);
- one deadline, `query_timeout_ms`, for the whole request: every forward it makes gets only the
  time left, never a timeout of its own (`Deadline`);
- at most one forward per instance and step (the active owners, then standbys with
  `stale=true`), never one per key (`processor.query.reads`).

Per worker:
- at most `query_max_requests` reads of store contents served at once; one more is refused at
  once, before it takes a thread (a `Gate`, taken in `processor.query.guard`);
- at most `query_max_forwards` forwards to other instances in flight at once; a request that
  needs one more is refused instead of queueing. Fewer forwards than reads, at most half of
  them waiting on any one instance, and an instance that did not answer is not asked again for
  a moment (`processor.query.forwarding`): a hung instance holds few requests, and the rest
  still serve what is held here and on the other instances.

A refusal (`Overloaded`) is a 503 (413 for the key cap) with a `Retry-After` header and a JSON
body: `detail` (what happened, what to do), `limit` (the setting or constant that was hit) and
`retry_after_s`. Nothing is retried by the server: retrying is the client's call.

`QueryLimits` holds the settings; their defaults are the worker's (`processor.config`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from processor.config import WorkerConfig

__all__ = ["MAX_KEYS", "Deadline", "Gate", "Overloaded", "QueryLimits"]

MAX_KEYS = 10_000
"""Keys in one POST: a constant, not a setting, because `QueryClient` batches by it and a
batch of 10,000 is already answered in well under a second; more would only make one request
hold its thread (and its forwards) longer."""

RETRY_BUSY_S = 1
"""Retry-After when a gate is full: slots free as soon as requests finish (milliseconds, or
the deadline at worst)."""
RETRY_UNAVAILABLE_S = 2
"""Retry-After when no copy could answer: a rebalance or a restarting worker takes seconds."""


@dataclass(frozen=True, kw_only=True)
class QueryLimits:
    """The query API's bounds (`query_*` in `processor.config`; same defaults)."""

    timeout_s: float = 5.0
    max_requests: int = 8
    max_forwards: int = 4

    def __post_init__(self) -> None:
        if not self.timeout_s > 0 or self.max_requests < 1 or self.max_forwards < 1:
            raise ValueError(f"query limits must be positive: {self}")

    @classmethod
    def from_config(cls, config: WorkerConfig) -> QueryLimits:
        return cls(
            timeout_s=config.query_timeout_ms / 1000,
            max_requests=config.query_max_requests,
            max_forwards=config.query_max_forwards,
        )


class Overloaded(Exception):
    """A request over a bound: answered `status` with Retry-After, naming `limit`."""

    def __init__(
        self, detail: str, *, limit: str, status: int = 503, retry_after_s: int | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.limit = limit
        self.status = status
        self.retry_after_s = retry_after_s

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"detail": self.detail, "limit": self.limit}
        headers: dict[str, str] = {}
        if self.retry_after_s is not None:
            body["retry_after_s"] = self.retry_after_s
            headers["retry-after"] = str(self.retry_after_s)
        return JSONResponse(body, status_code=self.status, headers=headers)


class Deadline:
    """A point in time a request must be answered by, shared by everything the request does."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._at = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._at - self._clock())

    def share(self, fraction: float) -> Deadline:
        """A deadline `fraction` of the time left from now, for a phase that must leave the rest
        to a later one (the owners get half; standbys, when an owner did not answer, the rest).
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        return Deadline(fraction * self.remaining(), clock=self._clock)

    def __repr__(self) -> str:
        return f"Deadline({self.remaining():.3f}s left of {self.seconds:g}s)"


class Gate:
    """At most `limit` holders at once. Taking a slot never waits: when none is free it raises
    `Overloaded` naming `setting`. Thread-safe, and cheap enough for the event loop."""

    def __init__(self, limit: int, *, setting: str, what: str) -> None:
        self.limit = limit
        self.setting = setting
        self._what = what
        self._slots = threading.BoundedSemaphore(limit)

    def enter(self) -> None:
        """Take a slot, or raise Overloaded at once when there is none."""
        if not self._slots.acquire(blocking=False):
            raise Overloaded(
                f"this worker already has {self.limit} {self._what} in progress ({self.setting}); "
                f"retry after {RETRY_BUSY_S} s, or spread requests over more workers",
                limit=self.setting,
                retry_after_s=RETRY_BUSY_S,
            )

    def leave(self) -> None:
        self._slots.release()

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()
