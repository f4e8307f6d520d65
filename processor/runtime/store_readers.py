"""Queries reading each task's state backend now, so that closing a backend waits for them
(`processor.runtime.task_manager`)."""

from __future__ import annotations

import logging
import threading

from processor.state.backend import TaskStateBackend

log = logging.getLogger("processor.tasks")

READ_DRAIN_TIMEOUT_S = 1.0
"""How long closing a task's state waits for queries reading it. A query reads one page (at most
10,000 entries) of one task at a time: milliseconds, so a second is ample, and bounds what a
rebalance can lose to readers."""


class Readers:
    """Queries reading each backend now. `drain()` waits for them; a read it gave up on is
    told so when it ends (`leave()` returns False). Thread-safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        # By id(): a counted reader holds its backend, so the id is not reused meanwhile.
        self._reading: dict[int, int] = {}
        self._abandoned: set[int] = set()

    def enter(self, backend: TaskStateBackend) -> None:
        with self._changed:
            self._reading[id(backend)] = self._reading.get(id(backend), 0) + 1

    def leave(self, backend: TaskStateBackend) -> bool:
        """Count a read out; False when the backend was closed under it."""
        key = id(backend)
        with self._changed:
            intact = key not in self._abandoned
            if self._reading[key] == 1:
                del self._reading[key]
                self._abandoned.discard(key)
                self._changed.notify_all()
            else:
                self._reading[key] -= 1
            return intact

    def drain(self, backends: list[TaskStateBackend]) -> None:
        """Wait until no read of `backends` is in progress, at most READ_DRAIN_TIMEOUT_S.
        Call with the open lock held, so that no new read can start."""
        keys = {id(b) for b in backends}
        with self._changed:
            if self._changed.wait_for(
                lambda: not keys & self._reading.keys(), READ_DRAIN_TIMEOUT_S
            ):
                return
            late = keys & self._reading.keys()
            self._abandoned |= late
        log.warning(
            "closing task state while %d quer%s still read it after %.1fs; they answer 503",
            len(late),
            "y" if len(late) == 1 else "ies",
            READ_DRAIN_TIMEOUT_S,
        )
