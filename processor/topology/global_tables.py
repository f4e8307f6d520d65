"""Global tables as a topology declares them, and the stream-global table join that reads one.

A global table is a topic read whole (every partition) by every worker into a local store, as
Kafka Streams' GlobalKTable: it is no task's and has no changelog of its own, the topic being
its changelog (`processor.runtime.global_tables` keeps it up to date). A stream joins it by any
key: `key(key, value)` names the row, so the stream needs no co-partitioning and no
repartition; the join node sits in the stream's sub-topology and reads the store.

The join's rules are Kafka Streams' (`KStreamGlobalKTableJoinProcessor`):
- a record with a null value is dropped (a null value is no event to enrich);
- its lookup key is `key(key, value)` (default: the record's key, which may be None);
- a None lookup key: inner drops the record, left joins it with None;
- no row for the lookup key: inner drops the record, left joins it with None;
- the result keeps the stream record's key and timestamp: `(key, joiner(value, row))`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from processor.errors import StoredValueError
from processor.topology.operator import Operator
from processor.topology.record import RecordContext
from processor.topology.retry import Retry

if TYPE_CHECKING:
    from processor.topology.graph import StoreSpec
    from processor.topology.handling import ErrorHandler

__all__ = ["GlobalJoinProcessor", "GlobalJoinSpec", "GlobalTableSpec", "global_join_processor"]

KeyExtractor = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class GlobalTableSpec:
    """Topic `topic` read whole into store `store` on every worker; `on_deserialization_error`
    overrides the application's handler for its undecodable records."""

    topic: str
    store: StoreSpec
    on_deserialization_error: ErrorHandler | None = None

    @property
    def name(self) -> str:
        return self.store.name


@dataclass(frozen=True)
class GlobalJoinSpec:
    """What a GLOBAL_JOIN node joins: the global table's store, "inner" or "left", and the
    lookup key's extractor (None: the record's key)."""

    store: str
    how: str
    key: KeyExtractor | None = None

    def describe(self) -> str:
        lookup = "key=fn" if self.key is not None else "key=record key"
        return f"{self.how}, global store: {self.store}, {lookup}"


class _Lookup:
    """What the join reads: a store with `get(key)` (`processor.state.global_store`)."""

    name: str

    def get(self, key: Any) -> Any: ...


class GlobalJoinProcessor(Operator):
    """Looks each record up in a global table and forwards `(key, joiner(value, row))`."""

    __slots__ = ("joiner", "key", "left", "store")

    def __init__(
        self,
        name: str,
        store: _Lookup,
        spec: GlobalJoinSpec,
        joiner: Callable[[Any, Any], Any],
        context: RecordContext,
        retry: Retry | None,
    ) -> None:
        super().__init__(name, context, retry)
        self.store = store
        self.key = spec.key
        self.left = spec.how == "left"
        self.joiner = joiner

    def process(self, key: Any, value: Any) -> bool:
        if value is None:
            return False
        extract = self.key
        if extract is None:
            lookup = key
        else:
            try:
                lookup = extract(key, value)
            except Exception as e:
                lookup = self.recover(e, extract, key, value)
        row = None if lookup is None else self._row(lookup)
        if row is None and not self.left:
            return False
        try:
            joined = self.joiner(value, row)
        except Exception as e:
            joined = self.recover(e, self.joiner, value, row)
        return self.forward(key, joined)

    def _row(self, lookup: Any) -> Any:
        try:
            return self.store.get(lookup)
        except StoredValueError as e:
            self.failed(e)
        except Exception as e:
            # The lookup key is of a type the table's key serde cannot write.
            self.failed(
                TypeError(
                    f"lookup key {lookup!r} cannot be looked up in global table "
                    f"{self.store.name!r} ({type(e).__name__}: {e}); make the join's key= "
                    "return keys of the table's key type"
                )
            )


def global_join_processor(
    name: str,
    spec: GlobalJoinSpec,
    joiner: Callable[..., Any] | None,
    stores: Mapping[str, Any],
    context: RecordContext,
    retry: Retry | None,
) -> GlobalJoinProcessor:
    """The join node `name` over the global store its spec names, taken from `stores`."""
    assert joiner is not None, f"global join {name} has no joiner"
    store = stores.get(spec.store)
    if store is None:
        raise ValueError(
            f"join {name!r} reads global store {spec.store!r}, which this task was not given"
        )
    return GlobalJoinProcessor(name, store, spec, joiner, context, retry)
