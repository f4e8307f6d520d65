"""What a `Stream.process` function sees: its stores, the record's metadata, and `forward`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from processor.errors import TopologyError
from processor.topology.record import Headers, RecordContext


class Store(Protocol):
    """A key-value store as operators use it (`processor.state.typed.KeyValueStore`)."""

    name: str

    def get(self, key: Any, default: Any = None) -> Any: ...
    def put(self, key: Any, value: Any) -> None: ...
    def delete(self, key: Any) -> None: ...
    def range(self, start: Any = None, end: Any = None) -> Iterator[tuple[Any, Any]]: ...
    def all(self) -> Iterator[tuple[Any, Any]]: ...


class ProcessorContext:
    """Given to a `process` function with each record."""

    __slots__ = ("_forward", "_record", "_stores", "task_id")

    def __init__(
        self,
        record: RecordContext,
        stores: Mapping[str, Store],
        forward: Callable[[Any, Any], None],
        task_id: str,
    ) -> None:
        self._record = record
        self._stores = stores
        self._forward = forward
        self.task_id = task_id

    def store(self, name: str) -> Store:
        """A store this operator declared in `process(..., stores=[...])`."""
        try:
            return self._stores[name]
        except KeyError:
            raise TopologyError(
                f"store {name!r} was not given to this process() operator; "
                f"it has {sorted(self._stores) or 'none'}: add it to stores=[...]"
            ) from None

    def forward(self, key: Any, value: Any) -> None:
        """Send (key, value) downstream, with the current record's timestamp and headers."""
        self._forward(key, value)

    @property
    def topic(self) -> str:
        return self._record.topic

    @property
    def partition(self) -> int:
        return self._record.partition

    @property
    def offset(self) -> int:
        return self._record.offset

    @property
    def timestamp(self) -> int:
        return self._record.timestamp

    @property
    def headers(self) -> Headers | None:
        return self._record.headers
