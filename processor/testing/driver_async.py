"""Async operators in the `TopologyTestDriver`: one event loop, started with the topology's
`on_start` hooks; each record's call runs to completion when the record arrives and its result
goes on at once, so a test sees the outputs of a topology with `map_values_async` in input
order, deterministically, with the operator's timeout, retries and error handling as in a
worker."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from processor.dsl.topology import Topology
from processor.topology.async_ops import AsyncProcessor

__all__ = ["DriverAsyncCalls"]


class DriverAsyncCalls:
    def __init__(self, topology: Topology) -> None:
        self._loop = asyncio.new_event_loop()
        # A driver dropped without close() still closes its loop.
        weakref.finalize(self, self._loop.close)
        self._stop_hooks = list(topology.stop_hooks)
        for hook in topology.start_hooks:
            self._loop.run_until_complete(hook())

    def submit(self, processor: AsyncProcessor, key: Any, value: Any) -> None:
        try:
            c = processor.context
            call = processor.call(key, value, (c.topic, c.partition, c.offset))
            outcome, error = self._loop.run_until_complete(call), None
        except Exception as e:
            outcome, error = None, e
        processor.emit(key, value, outcome, error)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        for hook in self._stop_hooks:
            self._loop.run_until_complete(hook())
        self._loop.close()
