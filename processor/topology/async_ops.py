"""Operators that call asynchronous functions (`map_values_async` and its kin): a record's call
runs on the worker's event loop while the task goes on with the next records, and its result
continues through the rest of the sub-topology later, on the worker's thread.

An async operator is the only child of its sub-topology's source (`dsl.builder.add_async`
puts an internal topic in front of it otherwise), so everything a record changes or writes
happens downstream of its call's result. That is what makes the guarantees hold: the task
commits a partition only up to the first record whose result has not been dealt with (the
completed prefix, `processor.runtime.async_channel`), and under exactly-once a transaction holds
only outputs of records inside the prefix it commits.

`AsyncProcessor.process` hands the record to its `AsyncInput` (the task's channel; in the test
driver, one that runs the call at once); the input calls `emit` with the outcome, the record
context set back to the record's. The call itself (`call_with_policy`) applies the timeout and
the retries with the event loop's sleep, so a retried call is the only thing repeated.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from processor.errors import TopologyError
from processor.topology.clock import StreamClock
from processor.topology.operator import Processor
from processor.topology.record import OperatorError, RecordContext
from processor.topology.retry import Retry

__all__ = [
    "AsyncInput",
    "AsyncKind",
    "AsyncProcessor",
    "AsyncSpec",
    "async_input_key",
    "call_with_policy",
]

log = logging.getLogger("processor.async")


class AsyncKind(Enum):
    """What the function takes and what its result means."""

    MAP = "map_async"  # fn(key, value) -> (key, value)
    MAP_VALUES = "map_values_async"  # fn(value) -> value
    FILTER = "filter_async"  # fn(key, value) -> keep?
    FLAT_MAP_VALUES = "flat_map_values_async"  # fn(value) -> iterable of values


@dataclass(frozen=True)
class AsyncSpec:
    """An async operator's settings (`Stream.map_values_async` documents them)."""

    kind: AsyncKind
    concurrency: int = 64
    ordered: bool = True
    timeout_ms: int = 5_000

    def describe(self) -> str:
        order = "ordered" if self.ordered else "unordered"
        return (
            f"{self.kind.value}, concurrency {self.concurrency}, {order}, "
            f"timeout {self.timeout_ms} ms"
        )

    def check(self, name: str, function: Callable[..., Any]) -> None:
        if not callable(function):
            raise TopologyError(f"{self.kind.value} {name!r}: the function is not callable")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise TopologyError(
                f"{self.kind.value} {name!r}: concurrency must be an int >= 1, "
                f"not {self.concurrency!r}"
            )
        if not isinstance(self.timeout_ms, int) or self.timeout_ms < 1:
            raise TopologyError(
                f"{self.kind.value} {name!r}: timeout_ms must be an int >= 1, "
                f"not {self.timeout_ms!r}"
            )


def async_input_key(node: str) -> str:
    """Where a task's `AsyncInput` for the async operator `node` is found among what its
    processors are built over."""
    return f"async:{node}"


class AsyncInput(Protocol):
    """Runs an async operator's calls and hands the outcomes back (`AsyncProcessor.emit`)."""

    def submit(self, processor: AsyncProcessor, key: Any, value: Any) -> None: ...


async def call_with_policy(
    function: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    timeout_s: float,
    retry: Retry | None,
    describe: Callable[[], str],
) -> Any:
    """`await function(*args)` within `timeout_s` (a `TimeoutError` past it), called again
    after an error that `retry` lists, waiting with the loop's sleep; raises the last error."""
    attempt = 0
    while True:
        try:
            return await asyncio.wait_for(_awaited(function, args), timeout_s)
        except Exception as error:
            if retry is None or attempt >= retry.attempts or not isinstance(error, retry.on):
                raise
            attempt += 1
            delay = retry.delay_ms(attempt)
            log.warning(
                "%s raised %s: %s; retry %d of %d in %d ms",
                describe(),
                type(error).__name__,
                error,
                attempt,
                retry.attempts,
                delay,
            )
            await asyncio.sleep(delay / 1000)


async def _awaited(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        return await result
    return result  # a plain function is allowed: it runs on the loop


class AsyncProcessor(Processor):
    """The operator: hands each record to its input, and forwards what its call returned."""

    __slots__ = ("_clock", "_input", "context", "function", "retry", "spec")

    def __init__(
        self,
        name: str,
        spec: AsyncSpec,
        function: Callable[..., Any],
        context: RecordContext,
        async_input: AsyncInput,
        retry: Retry | None,
        clock: StreamClock | None,
    ) -> None:
        super().__init__(name)
        self.spec = spec
        self.function = function
        self.context = context
        self.retry = retry if retry is not None and retry.attempts > 0 else None
        self._input = async_input
        # Stream time moves when a result is forwarded, not when its record was read: records
        # read ahead of results would otherwise make the results late for windows downstream.
        self._clock = clock

    def process(self, key: Any, value: Any) -> bool:
        self._input.submit(self, key, value)
        return True  # its outcome is counted when it arrives

    def call(self, key: Any, value: Any, where: tuple[str, int, int]) -> Coroutine[Any, Any, Any]:
        """The call for the record (key, value) at `where` (topic, partition, offset), with
        this operator's timeout and retries."""
        kind = self.spec.kind
        args = (
            (value,) if kind in (AsyncKind.MAP_VALUES, AsyncKind.FLAT_MAP_VALUES) else (key, value)
        )

        def describe() -> str:
            return f"{kind.value} {self.name!r} on record {where[0]}[{where[1]}]@{where[2]}"

        return call_with_policy(
            self.function, args, self.spec.timeout_ms / 1000, self.retry, describe
        )

    def emit(self, key: Any, value: Any, outcome: Any, error: BaseException | None) -> bool:
        """Forward what the call for (key, value) gave (the record context is the record's);
        raises the call's error as this operator's."""
        clock = self._clock
        if clock is not None:
            clock.observe(self.context.timestamp)
        if error is not None:
            if isinstance(error, asyncio.TimeoutError | TimeoutError):
                error = TimeoutError(
                    f"no result within timeout_ms={self.spec.timeout_ms}"
                    + (f" ({self.retry.attempts} retries)" if self.retry is not None else "")
                )
            raise OperatorError(self.name, error) from error
        kind = self.spec.kind
        if kind is AsyncKind.MAP_VALUES:
            return self.forward(key, outcome)
        if kind is AsyncKind.FILTER:
            return self.forward(key, value) if outcome else False
        if kind is AsyncKind.MAP:
            try:
                new_key, new_value = outcome
            except (TypeError, ValueError) as e:
                raise OperatorError(
                    self.name, TypeError(f"returned {outcome!r}, not a (key, value) pair")
                ) from e
            return self.forward(new_key, new_value)
        try:
            values = list(outcome)
        except TypeError as e:
            raise OperatorError(
                self.name, TypeError(f"returned {outcome!r}, not an iterable")
            ) from e
        reached = False
        for new_value in values:
            if self.forward(key, new_value):
                reached = True
        return reached
