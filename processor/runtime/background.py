"""Starting something on a thread of its own while the worker's start goes on, with its failure
raised on the worker's thread.

A worker's start is mostly waiting on the broker (the cluster check, the topics, the group
join); whatever does not have to come before that (the query API: importing FastAPI and
uvicorn and building the app) can be done meanwhile. `BackgroundStart` runs such a `start()`
and keeps its outcome for the thread that owns it:

```
                 start()                       raise_if_failed() / close()
STARTING ------------------> STARTED ----------------------------------> CLOSED
    |                                                                     ^
    +--(start() raised)--> FAILED --------------------------------------> +
    +--(close() first)---------------------------------------------------> +
```

- The starter thread owns STARTING -> STARTED | FAILED; the owner's thread (the worker's main
  thread) owns -> CLOSED. One lock orders them, so a result that arrives after `close()` is
  closed at once, never leaked.
- A failure is kept, not lost: `raise_if_failed()` raises it on the owner's thread, as it would
  have been raised had `start()` run there. A `ProcessorError` (a `ConfigError` say) is raised
  as itself, with its message unchanged; anything else as a `BackgroundStartError` naming what
  failed to start, chained to the cause.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum
from typing import Generic, TypeVar

from processor.errors import ProcessorError

__all__ = ["BackgroundStart", "BackgroundStartError", "StartState"]

log = logging.getLogger("processor.worker")

T = TypeVar("T")
"""What `start()` makes: a running server, say, that `close` stops."""

# How long `close()` waits for a start still under way: importing a package and building an app
# takes about a second on a loaded machine; the thread is a daemon, so a start that hangs
# beyond this does not keep the process alive.
CLOSE_TIMEOUT_S = 15.0


class StartState(Enum):
    STARTING = "starting"
    STARTED = "started"
    FAILED = "failed"
    CLOSED = "closed"


_TRANSITIONS: dict[StartState, frozenset[StartState]] = {
    StartState.STARTING: frozenset({StartState.STARTED, StartState.FAILED, StartState.CLOSED}),
    StartState.STARTED: frozenset({StartState.CLOSED}),
    StartState.FAILED: frozenset({StartState.CLOSED}),
    StartState.CLOSED: frozenset(),
}


class BackgroundStartError(ProcessorError):
    """Something the worker started on a thread of its own failed to start."""

    def __init__(self, what: str, cause: BaseException) -> None:
        self.what = what
        self.cause = cause
        super().__init__(
            f"{what} failed to start: {type(cause).__name__}: {cause}; the worker stopped "
            "(see the traceback above for where it failed)"
        )


class BackgroundStart(Generic[T]):
    """Runs `start()` on a daemon thread named `thread_name`; `close(result)` undoes it."""

    def __init__(
        self,
        what: str,
        start: Callable[[], T],
        close: Callable[[T], None],
        *,
        thread_name: str,
    ) -> None:
        self.what = what
        self._start = start
        self._close = close
        self._lock = threading.Lock()
        self._state = StartState.STARTING
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    @property
    def state(self) -> StartState:
        return self._state

    def _transition(self, target: StartState) -> None:
        if target not in _TRANSITIONS[self._state]:
            raise ProcessorError(
                f"{self.what}: illegal transition {self._state.value} -> {target.value}"
            )
        self._state = target

    # --- starter thread

    def _run(self) -> None:
        try:
            result = self._start()
        except BaseException as e:  # kept for the owner's thread, which raises it
            if not isinstance(e, ProcessorError):  # its message says all, as on the main thread
                log.exception("%s failed to start", self.what)
            with self._lock:
                if self._state is StartState.STARTING:
                    self._error = e
                    self._transition(StartState.FAILED)
            return
        with self._lock:
            if self._state is StartState.STARTING:
                self._result = result
                self._transition(StartState.STARTED)
                return
        self._close(result)  # closed while it started: undo it at once

    # --- owner's thread

    def raise_if_failed(self) -> None:
        """Raise the failure of `start()`, if it failed: a `ProcessorError` as itself, else a
        `BackgroundStartError` from it. Returns at once otherwise (started or not yet)."""
        error = self._error
        if error is None:
            return
        if isinstance(error, ProcessorError):
            raise error
        raise BackgroundStartError(self.what, error) from error

    def wait(self, timeout: float) -> T | None:
        """Wait up to `timeout` s for the start to end; what it made (None: not started)."""
        self._thread.join(timeout)
        return self._result

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Undo the start: wait up to `timeout` s for one under way, then close what it made.
        A start that ends later is closed by its own thread."""
        self._thread.join(timeout)
        with self._lock:
            if self._state is StartState.CLOSED:
                return
            result, started = self._result, self._state is StartState.STARTED
            self._transition(StartState.CLOSED)
            self._result = None
        if started:
            self._close(result)  # type: ignore[arg-type]  # set with STARTED
        elif self._thread.is_alive():
            log.warning(
                "%s still starting after %g s; left to stop with the process", self.what, timeout
            )
