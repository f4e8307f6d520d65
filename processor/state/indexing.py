"""Indexes that follow from a store's entries and are never changelogged (window, timer and
expiry indexes), and how a restore rebuilds them: `IndexingBackend` applies each changelog batch
with the index entries it implies (`index_derivations`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial

from processor.state.backend import Change, TaskStateBackend
from processor.state.time_index import CLOCKS
from processor.state.timer_store import timer_index_changes
from processor.state.ttl_store import expiry_index_changes
from processor.topology.graph import StoreKind, StoreSpec
from processor.windows.layout import index_changes

# For one store: the index changes (store -> changes) a batch of its changes implies.
Derivation = Callable[[Sequence[Change]], dict[str, list[Change]]]


def _same_store(
    store: str, derive: Callable[[Sequence[Change]], list[Change]], batch: Sequence[Change]
) -> dict[str, list[Change]]:
    return {store: derive(batch)}


def index_derivations(specs: Sequence[StoreSpec]) -> dict[str, Derivation]:
    """Per store with an index, how its changes imply index entries."""
    derivations: dict[str, Derivation] = {}
    for spec in specs:
        if spec.windowed:
            derivations[spec.name] = partial(_same_store, spec.name, index_changes)
        elif spec.kind is StoreKind.TIMERS:
            derivations[spec.name] = partial(_same_store, spec.name, timer_index_changes)
        elif spec.expiry_store is not None:
            derive = partial(expiry_index_changes, clock=CLOCKS[spec.ttl_clock], ttl_ms=spec.ttl_ms)
            derivations[spec.name] = partial(_same_store, spec.expiry_store, derive)
    return derivations


def backend_stores(specs: Sequence[StoreSpec]) -> list[str]:
    """The column families a task with `specs` needs: each store's, and each expiry index's."""
    names = [spec.name for spec in specs]
    names += [spec.expiry_store for spec in specs if spec.expiry_store is not None]
    return names


class IndexingBackend:
    """A task's backend as its restore writes it: the changes of stores with an index are
    applied with the index entries they imply, which their changelogs do not carry."""

    def __init__(self, backend: TaskStateBackend, derivations: Mapping[str, Derivation]) -> None:
        self.inner = backend
        self._derivations = dict(derivations)

    @property
    def stores(self) -> tuple[str, ...]:
        return self.inner.stores

    def get(self, store: str, key: bytes) -> bytes | None:
        return self.inner.get(store, key)

    def range(
        self, store: str, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.range(store, start, end)

    def approximate_count(self, store: str) -> int:
        return self.inner.approximate_count(store)

    def write(self, changes: Mapping[str, Sequence[Change]], offsets: Mapping[str, int]) -> None:
        indexed: dict[str, list[Change]] = {store: list(batch) for store, batch in changes.items()}
        for store, batch in changes.items():
            derive = self._derivations.get(store)
            if derive is None:
                continue
            for target, derived in derive(batch).items():
                indexed.setdefault(target, []).extend(derived)
        self.inner.write(indexed, offsets)

    def offsets(self) -> dict[str, int]:
        return self.inner.offsets()

    def close(self) -> None:
        self.inner.close()


def with_indexes(backend: TaskStateBackend, specs: Sequence[StoreSpec]) -> TaskStateBackend:
    """`backend` as a restore writes it (unchanged when no store has an index)."""
    derivations = index_derivations(specs)
    return IndexingBackend(backend, derivations) if derivations else backend


def unwrapped(backend: TaskStateBackend) -> TaskStateBackend:
    """The backend under an `IndexingBackend` (a running task writes its indexes itself)."""
    return backend.inner if isinstance(backend, IndexingBackend) else backend
