"""The worker's event loop for async operators (`processor.topology.async_ops`), on a thread of
its own: calls are scheduled on it from the worker's thread, and their outcomes come back in
`completed`, which the worker's loop drains (`pump`) to hand each to its task's channel.

The topology's `on_start` hooks run on the loop before any call (a hook that fails stops the
worker with its error), the `on_stop` hooks when the worker stops. At most `max_in_flight`
calls run at once on the whole worker (`--async-max-in-flight`); each task's channel also keeps
to its operator's `concurrency`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from processor.errors import ProcessorError

__all__ = ["AsyncRunner", "CallDone"]

log = logging.getLogger("processor.async")

_HOOK_TIMEOUT_S = 60.0


class CallDone(Protocol):
    """Who gets a call's outcome (an `AsyncChannel`), on the worker's thread."""

    closed: bool

    def complete(self, ticket: Any, future: concurrent.futures.Future[Any]) -> None: ...


def _ignore(operator: str, ok: bool, seconds: float) -> None:
    pass


class AsyncRunner:
    def __init__(
        self,
        start_hooks: list[Callable[[], Awaitable[None]]],
        stop_hooks: list[Callable[[], Awaitable[None]]],
        max_in_flight: int,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        # Told of each call's outcome: (operator, ok, seconds) (`AsyncMetrics.observe`).
        self.observe: Callable[[str, bool, float], None] = _ignore
        self.completed: deque[tuple[CallDone, Any, concurrent.futures.Future[Any]]] = deque()
        self._stop_hooks = stop_hooks
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="async-calls", daemon=True)
        self._thread.start()
        for hook in start_hooks:
            self._run_hook(hook, "on_start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    @property
    def room(self) -> bool:
        return self.in_flight < self.max_in_flight

    def submit(
        self, call: Coroutine[Any, Any, Any], done: CallDone, ticket: Any
    ) -> concurrent.futures.Future[Any]:
        """Run `call` on the loop; its outcome reaches `done.complete(ticket, future)` through
        `pump`."""
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        self.in_flight += 1
        completed = self.completed
        future.add_done_callback(lambda f: completed.append((done, ticket, f)))
        return future

    def pump(self) -> int:
        """Hand the calls completed since the last pump to their channels; returns how many."""
        completed = self.completed
        count = 0
        while completed:
            done, ticket, future = completed.popleft()
            self.in_flight -= 1
            count += 1
            if not done.closed:
                done.complete(ticket, future)
        return count

    def close(self) -> None:
        """Run the `on_stop` hooks, then stop the loop (calls still running are cancelled)."""
        if self._loop.is_closed():
            return
        for hook in self._stop_hooks:
            try:
                self._run_hook(hook, "on_stop")
            except ProcessorError as e:
                log.warning("%s", e)
        self._loop.call_soon_threadsafe(self._cancel_and_stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def _cancel_and_stop(self) -> None:
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.stop()

    def _run_hook(self, hook: Callable[[], Awaitable[None]], what: str) -> None:
        async def run() -> None:
            await hook()

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        name = getattr(hook, "__qualname__", repr(hook))
        try:
            future.result(timeout=_HOOK_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ProcessorError(
                f"the topology's {what} hook {name} did not finish within {_HOOK_TIMEOUT_S:.0f} s"
            ) from None
        except Exception as e:
            raise ProcessorError(
                f"the topology's {what} hook {name} raised {type(e).__name__}: {e}"
            ) from e
