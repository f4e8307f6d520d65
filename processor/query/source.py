"""What the query API needs from a worker: its stores, who holds each task, where the other
instances listen, and reads of the copies held here. `processor.runtime.worker` provides it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from processor.ids import TaskId
from processor.state.backend import TaskStateBackend
from processor.topology.graph import StoreSpec

T = TypeVar("T")


@dataclass(frozen=True)
class StoreInfo:
    spec: StoreSpec
    subtopology: int
    partitions: int


@dataclass(frozen=True)
class Owners:
    """Who holds a task by the current assignment: None while there is none (a rebalance)."""

    active: str | None
    standbys: tuple[str, ...]


@dataclass(frozen=True)
class LocalRead:
    value: Any
    role: str  # "active" or "standby"
    lag: int  # changelog records behind (0 for an active task; -1: not known yet)


class QuerySource(Protocol):
    @property
    def instance_id(self) -> str: ...

    def stores(self) -> Mapping[str, StoreInfo]: ...

    def owners(self, task: TaskId) -> Owners: ...

    def endpoint(self, instance: str) -> str | None: ...

    def instances(self) -> dict[str, dict[str, Any]]:
        """Per instance: its endpoint and its active and standby tasks."""
        ...

    def read_local(
        self, task: TaskId, read: Callable[[TaskStateBackend], Any], *, standby: bool
    ) -> LocalRead | None:
        """`read(backend)` on this worker's copy of `task`: the running active task, or (when
        `standby`) a standby. None: no such copy here."""
        ...

    def lags(self) -> dict[str, dict[str, Any]]:
        """Per task held here: role and changelog records behind."""
        ...
