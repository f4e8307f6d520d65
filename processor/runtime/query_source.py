"""The worker's side of the query API (`processor.query.source.QuerySource`): its stores, the
current assignment, the endpoints the current members publish on the metadata topic, and reads
of the copies this worker holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from processor.ids import TaskId
from processor.query.source import LocalRead, Owners, StoreInfo
from processor.state.backend import TaskStateBackend
from processor.status.view import KnownInstance

if TYPE_CHECKING:
    from processor.runtime.assignment import Assignment
    from processor.runtime.rebalance import Rebalancer
    from processor.runtime.status_publisher import StatusPublisher
    from processor.runtime.task_manager import TaskManager
    from processor.status.record import StatusBoard


class WorkerView(Protocol):
    """What the query API reads of a running worker."""

    @property
    def instance_id(self) -> str: ...
    @property
    def endpoint(self) -> str | None: ...
    @property
    def assignment(self) -> Assignment | None: ...
    @property
    def board(self) -> StatusBoard: ...
    @property
    def task_manager(self) -> TaskManager | None: ...


class RuntimeView:
    """A `WorkerView` over a worker's collaborators (the HTTP thread reads through it)."""

    def __init__(
        self, instance_id: str, rebalancer: Rebalancer, status: StatusPublisher, tasks: TaskManager
    ) -> None:
        self.instance_id = instance_id
        self._rebalancer = rebalancer
        self._status = status
        self.task_manager = tasks

    @property
    def endpoint(self) -> str | None:
        return self._status.endpoint

    @property
    def assignment(self) -> Assignment | None:
        return self._rebalancer.assignment

    @property
    def board(self) -> StatusBoard:
        return self._status.board


class WorkerQuerySource:
    def __init__(self, worker: WorkerView, stores: Mapping[str, StoreInfo]) -> None:
        self._worker = worker
        self._stores = dict(stores)

    @property
    def instance_id(self) -> str:
        return self._worker.instance_id

    def stores(self) -> Mapping[str, StoreInfo]:
        return self._stores

    def owners(self, task: TaskId) -> Owners:
        assignment = self._worker.assignment
        if assignment is None:
            return Owners(None, ())
        standbys = tuple(sorted(i for i, held in assignment.standby.items() if task in held))
        return Owners(assignment.active.get(task), standbys)

    def endpoint(self, instance: str) -> str | None:
        """Where `instance` serves queries: only a current member of the group has one here,
        whatever a status on the metadata topic claims for another."""
        if instance == self._worker.instance_id:
            return self._worker.endpoint
        assignment = self._worker.assignment
        if assignment is None or instance not in assignment.instances:
            return None
        status = self._worker.board.statuses.get(instance)
        return status.endpoint if status is not None else None

    def instances(self) -> dict[str, dict[str, Any]]:
        assignment = self._worker.assignment
        members = sorted(assignment.instances) if assignment is not None else []
        result: dict[str, dict[str, Any]] = {}
        for instance in members:
            assert assignment is not None
            status = self._worker.board.statuses.get(instance)
            result[instance] = {
                "endpoint": self.endpoint(instance),
                "active_tasks": sorted(str(t) for t in assignment.tasks_of(instance)),
                "standby_tasks": sorted(
                    str(t) for t in assignment.standby.get(instance, frozenset())
                ),
                "status_updated_ms": status.updated_ms if status is not None else None,
            }
        return result

    def known_instances(self) -> dict[str, KnownInstance]:
        """Every instance with a status on the metadata topic or in the current assignment
        (the status page's): its tasks by the assignment (a non-member: as its status says)
        and, for members only, its endpoint. Runs on the HTTP thread: the board's dict is
        copied in one step."""
        statuses = dict(self._worker.board.statuses)
        assignment = self._worker.assignment
        members = assignment.instances if assignment is not None else frozenset()
        known: dict[str, KnownInstance] = {}
        for name in sorted(set(statuses) | set(members)):
            status = statuses.get(name)
            if assignment is not None and name in members:
                active = tuple(sorted(str(t) for t in assignment.tasks_of(name)))
                standby = tuple(sorted(str(t) for t in assignment.standby.get(name, ())))
            elif status is not None:
                active, standby = status.active_tasks, status.standby_tasks
            else:
                active = standby = ()
            known[name] = KnownInstance(
                instance=name,
                phase=status.phase.value if status is not None else "",
                host=status.host if status is not None else "",
                endpoint=self.endpoint(name),
                active_tasks=active,
                standby_tasks=standby,
            )
        return known

    def read_local(
        self, task: TaskId, read: Callable[[TaskStateBackend], Any], *, standby: bool
    ) -> LocalRead | None:
        tasks = self._worker.task_manager
        if tasks is None:
            return None
        found = tasks.read(task, read, standby=standby)
        if found is None:
            return None
        value, role, lag = found
        return LocalRead(value, role, lag)

    def lags(self) -> dict[str, dict[str, Any]]:
        tasks = self._worker.task_manager
        if tasks is None:
            return {}
        result: dict[str, dict[str, Any]] = {
            str(t): {"role": "active", "state": task.state.value, "lag": 0}
            for t, task in tasks.tasks.items()
        }
        for t, progress in tasks.restore_progress().items():
            role = "standby" if progress.standby else "active"
            result[str(t)] = {
                "role": role,
                "state": progress.state.value,
                "lag": progress.remaining,
            }
        return result
