"""The stream operators that call asynchronous functions: `map_values_async`, `map_async`,
`filter_async`, `flat_map_values_async` (`processor.topology.async_ops` runs them)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from processor.topology.async_ops import AsyncKind, AsyncSpec
from processor.topology.graph import OperatorKind, OperatorNode
from processor.topology.retry import Retry

if TYPE_CHECKING:
    from processor.dsl.builder import GraphBuilder
    from processor.dsl.stream import Stream
    from processor.serdes import Serde

__all__ = ["AsyncOperations"]


class AsyncOperations:
    """Mixed into `Stream`. Each call runs on the worker's event loop (`Topology.on_start`
    opens clients there), at most `concurrency` at once per task; the task goes on reading
    meanwhile and pauses its partitions while the limit is reached. With `ordered=True` a
    partition's results come out in its input order; with `ordered=False` as they arrive, with
    calls for one key never overlapping, so each key's order holds (under exactly-once a result
    still waits until every earlier record of its partition is done). A call that takes longer
    than `timeout_ms` fails with `TimeoutError`; `retry=Retry(on=(...))` calls it again, after
    waiting on the loop; what still fails goes to the processing error handler like any
    operator's error. Offsets are committed up to the first record not yet done, so a crash
    only repeats calls that were in flight. When the stream is not read straight from a source
    topic, the records pass through the internal topic `<application_id>-<name>-async` first:
    give `name=`."""

    _builder: GraphBuilder
    _node: str
    key_serde: Serde[Any]
    value_serde: Serde[Any]
    key_changed: bool

    def _at(self, node: str, *, key_changed: bool) -> Stream[Any, Any]:
        raise NotImplementedError

    def map_values_async(
        self,
        function: Callable[[Any], Awaitable[Any]],
        *,
        concurrency: int = 64,
        ordered: bool = True,
        timeout_ms: int = 5_000,
        retry: Retry | None = None,
        name: str | None = None,
    ) -> Stream[Any, Any]:
        """Replace each value with `await function(value)`."""
        spec = AsyncSpec(AsyncKind.MAP_VALUES, concurrency, ordered, timeout_ms)
        return self._async(spec, function, retry, name)

    def map_async(
        self,
        function: Callable[[Any, Any], Awaitable[tuple[Any, Any]]],
        *,
        concurrency: int = 64,
        ordered: bool = True,
        timeout_ms: int = 5_000,
        retry: Retry | None = None,
        name: str | None = None,
    ) -> Stream[Any, Any]:
        """Replace each record with the (key, value) of `await function(key, value)`."""
        spec = AsyncSpec(AsyncKind.MAP, concurrency, ordered, timeout_ms)
        return self._async(spec, function, retry, name, changes_keys=True)

    def filter_async(
        self,
        predicate: Callable[[Any, Any], Awaitable[bool]],
        *,
        concurrency: int = 64,
        ordered: bool = True,
        timeout_ms: int = 5_000,
        retry: Retry | None = None,
        name: str | None = None,
    ) -> Stream[Any, Any]:
        """Keep the records for which `await predicate(key, value)` is true."""
        spec = AsyncSpec(AsyncKind.FILTER, concurrency, ordered, timeout_ms)
        return self._async(spec, predicate, retry, name)

    def flat_map_values_async(
        self,
        function: Callable[[Any], Awaitable[Iterable[Any]]],
        *,
        concurrency: int = 64,
        ordered: bool = True,
        timeout_ms: int = 5_000,
        retry: Retry | None = None,
        name: str | None = None,
    ) -> Stream[Any, Any]:
        """Replace each record with one per value of `await function(value)` (none when it is
        empty), with the record's key."""
        spec = AsyncSpec(AsyncKind.FLAT_MAP_VALUES, concurrency, ordered, timeout_ms)
        return self._async(spec, function, retry, name)

    def _async(
        self,
        spec: AsyncSpec,
        function: Callable[..., Any],
        retry: Retry | None,
        name: str | None,
        *,
        changes_keys: bool = False,
    ) -> Stream[Any, Any]:
        node_name = self._builder.name(spec.kind.value, name)
        spec.check(node_name, function)
        node = OperatorNode(
            node_name, OperatorKind.ASYNC, (), function=function, retry=retry, external=spec
        )
        added = self._builder.add_async(self._node, node, self.key_serde, self.value_serde)
        return self._at(added, key_changed=self.key_changed or changes_keys)
