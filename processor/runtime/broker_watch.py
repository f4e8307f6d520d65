"""Whether the broker takes this worker's requests, for its logs and metrics.

`BrokerWatch` logs a WARNING when the broker stops taking requests (again every 10 s, naming for
how long) and an INFO when it takes them again; after `OUTAGE_LIMIT_S` the error is fatal and
the worker stops.
"""

from __future__ import annotations

import logging
import time

from processor.errors import BrokerError

__all__ = ["OUTAGE_LIMIT_S", "BrokerWatch"]

log = logging.getLogger("processor.commit")

OUTAGE_LIMIT_S = 300.0
"""How long the broker may not take this worker's requests before the worker gives up."""
_WARNING_INTERVAL_S = 10.0


class BrokerWatch:
    """Whether the broker takes this worker's commits (and transactional initialisations), for
    its logs and metrics: a WARNING when a request fails, repeated every `_WARNING_INTERVAL_S`
    while they go on failing, an INFO when one succeeds again."""

    def __init__(self, limit_s: float = OUTAGE_LIMIT_S) -> None:
        self.limit_s = limit_s
        self.errors = 0
        """Requests the broker did not take, ever."""
        self._since: float | None = None
        self._failures = 0
        self._next_warning = 0.0

    @property
    def reachable(self) -> bool:
        return self._since is None

    def unreachable_for(self) -> float:
        """Seconds since the first failed request of the current outage was sent (0: none)."""
        return 0.0 if self._since is None else time.monotonic() - self._since

    def failed(self, began: float, what: str, error: BrokerError) -> None:
        """`what`, sent at `began`, failed with `error`. Raises a fatal `BrokerError` once the
        broker has taken no request for longer than `limit_s`."""
        now = time.monotonic()
        self.errors += 1
        self._failures += 1
        if self._since is None:
            self._next_warning = now
        self._since = began if self._since is None else min(self._since, began)
        down = now - self._since
        if down > self.limit_s:
            raise BrokerError(
                f"the broker has taken no request for {down:.0f}s, longer than "
                f"{self.limit_s:.0f}s; giving up ({what} failed: {error})",
                fatal=True,
            ) from error
        if now >= self._next_warning:
            self._next_warning = now + _WARNING_INTERVAL_S
            log.warning(
                "broker unreachable for %.1fs (%d failed requests): %s failed: %s; retrying "
                "for up to %.0fs more",
                down,
                self._failures,
                what,
                error,
                self.limit_s - down,
            )

    def waited(self, seconds: float, what: str) -> None:
        """`what` succeeded, but only after `seconds` (the broker was away meanwhile)."""
        log.warning(
            "broker unreachable or stalled for up to %.1fs: %s waited that long for it",
            seconds,
            what,
        )

    def answered(self) -> None:
        if self._since is not None:
            log.info(
                "broker reachable again after %.1fs (%d failed requests meanwhile)",
                time.monotonic() - self._since,
                self._failures,
            )
            self._since = None
            self._failures = 0
