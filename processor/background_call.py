"""A blocking call on a daemon thread of its own, its result in a future the main loop looks at.

For the few broker round trips a rebalance needs (`processor.runtime.group_snapshot`, the
hand-over's claim, a gained task's start offsets in `processor.kafka.start_offsets`) and the
load planner's decision: on the main loop, every task of the worker, those keeping their owner
too, would wait for them. Beside `runtime` and `kafka`, which both use it. A
daemon thread, not an executor: a call librdkafka never answers must not keep the process from
exiting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

__all__ = ["in_background"]

T = TypeVar("T")


def in_background(call: Callable[[], T], name: str) -> Future[T]:
    """Start `call` on a new daemon thread named `name`; its result (or exception) in the
    future."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as e:  # the caller gets it from the future
            future.set_exception(e)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
