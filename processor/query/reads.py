"""Reads of store contents for the query API, each task read on a copy that may answer, with a
bounded number of forwards (`processor.query.limits`).

Keys (`StoreReads.keys`), ranges (`StoreReads.entries`) and windows (`StoreReads.windows`) are
routed the same way, per task (`route`):

1. `stale` and `prefer_local`: tasks with a copy here (active or standby) are read here.
2. Owners: a task whose active copy is here is read here; every other owner is asked once, for
   all its tasks, within the deadline (half of it with `stale`, leaving the rest to step 3).
   Without `stale` the first failure answers the request (503): asking on is wasted work.
3. `stale`: tasks still unanswered are read from a standby copy here, then grouped by standby
   holder; each holder is asked at most once, for all its tasks, and one that fails hands its
   tasks on to their next holder.

So one request makes at most one forward per instance per step, never one per key, and every
forward shares the request's deadline. Whatever is still unanswered makes the whole request
`Unavailable`, naming why. A forwarded request, or a local-scope range, is read here only.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from processor.ids import TaskId
from processor.query.expiry import live_entries, live_values
from processor.query.forwarding import Forwarder, Unavailable
from processor.query.limits import Deadline, Overloaded
from processor.query.partitioner import partition_for
from processor.query.render import render
from processor.query.source import Owners, QuerySource, StoreInfo
from processor.query.windows import Part, TimeRange, combine, read_part
from processor.state.backend import TaskStateBackend

__all__ = ["StoreReads", "first", "route"]

Entries = list[tuple[bytes, bytes]]
Where = dict[str, dict[str, Any]]
T = TypeVar("T")
STALE_HINT = "; retry, or pass stale=true to read a standby copy"
# A request touching many tasks could list a problem per task; the first few say enough.
_PROBLEMS_SHOWN = 4


def route(
    tasks: Iterable[TaskId],
    *,
    me: str,
    owners: Callable[[TaskId], Owners],
    here: Callable[[TaskId, bool], bool],
    ask: Callable[[str, list[TaskId], bool, Deadline], None],
    stale: bool,
    prefer_local: bool,
    deadline: Deadline,
) -> None:
    """Have every task of `tasks` answered, by the steps in the module docstring.

    `here(task, standby)` reads `task` on this instance's copy (the active one, or with
    `standby` a standby when there is no active one) and says whether there was one;
    `ask(instance, tasks, stale, deadline)` has `instance` read `tasks` (raising Unavailable).
    Raises Unavailable naming what could not be read, Overloaded when a bound was hit."""
    pending = list(dict.fromkeys(tasks))
    asking = _Asking(ask, stale=stale)
    if stale and prefer_local:  # step 1
        pending = [t for t in pending if not here(t, True)]
    left = _read_on_owners(
        pending, me=me, owners=owners, here=here, asking=asking, deadline=deadline
    )
    if not left:
        return
    left = [t for t in left if not here(t, True)]
    _read_on_standbys(left, me=me, owners=owners, asking=asking, deadline=deadline)


class _Asking:
    """Asks instances (`ask`), keeping what went wrong for the error that says why a task could
    not be read."""

    def __init__(
        self, ask: Callable[[str, list[TaskId], bool, Deadline], None], *, stale: bool
    ) -> None:
        self._ask = ask
        self.stale = stale
        self.problems: list[str] = []

    def __call__(self, instance: str, its: list[TaskId], standby: bool, within: Deadline) -> bool:
        """Whether `instance` read `its`; Overloaded (a bound) is raised, naming the problems
        met before it."""
        try:
            self._ask(instance, its, standby, within)
        except Unavailable as e:
            self.problems.append(e.message)
            return False
        except Overloaded as e:
            if self.problems:  # say why the time ran out, too
                raise Overloaded(
                    f"{_summary(self.problems)}; then: {e.detail}",
                    limit=e.limit,
                    status=e.status,
                    retry_after_s=e.retry_after_s,
                ) from e
            raise
        return True

    def failure(self) -> Unavailable:
        return Unavailable(_summary(self.problems) + ("" if self.stale else STALE_HINT))


def _read_on_owners(
    pending: list[TaskId],
    *,
    me: str,
    owners: Callable[[TaskId], Owners],
    here: Callable[[TaskId, bool], bool],
    asking: _Asking,
    deadline: Deadline,
) -> list[TaskId]:
    """Step 2: the tasks left unanswered, for standbys to read (only with `stale`: without it,
    the first failure raises)."""
    by_owner: dict[str, list[TaskId]] = {}
    left: list[TaskId] = []
    for task in pending:
        owner = owners(task).active
        if owner is None:
            asking.problems.append(f"task {task} has no owner right now (a rebalance is under way)")
            left.append(task)
        elif owner == me:
            if not here(task, False):
                asking.problems.append(f"task {task} is not running here yet (restoring)")
                left.append(task)
        else:
            by_owner.setdefault(owner, []).append(task)
    if left and not asking.stale:
        raise asking.failure()
    within = deadline.share(0.5) if asking.stale else deadline
    for owner, its in sorted(by_owner.items()):
        if not asking(owner, its, False, within):
            if not asking.stale:
                raise asking.failure()
            left.extend(its)
    return left


def _read_on_standbys(
    left: list[TaskId],
    *,
    me: str,
    owners: Callable[[TaskId], Owners],
    asking: _Asking,
    deadline: Deadline,
) -> None:
    """Step 3, for the tasks no copy here could read: each holder asked at most once, one that
    fails handing its tasks on to their next holder."""
    asked = {me}
    unheld: list[TaskId] = []
    while left:
        by_holder: dict[str, list[TaskId]] = {}
        for task in left:
            holder = next((h for h in owners(task).standbys if h not in asked), None)
            if holder is None:
                unheld.append(task)
            else:
                by_holder.setdefault(holder, []).append(task)
        left = []
        for holder, its in sorted(by_holder.items()):
            asked.add(holder)
            if not asking(holder, its, True, deadline):
                left.extend(its)
    if unheld:
        asking.problems.extend(f"no other copy of task {t} could answer" for t in unheld[:1])
        raise asking.failure()


class StoreReads:
    """The query API's reads of one application's stores, from this worker."""

    def __init__(self, source: QuerySource, forwarder: Forwarder) -> None:
        self._source = source
        self._forwarder = forwarder

    def keys(
        self,
        store: str,
        info: StoreInfo,
        keys: Sequence[tuple[str, bytes]],
        *,
        stale: bool,
        prefer_local: bool,
        forwarded: bool,
        deadline: Deadline,
    ) -> list[dict[str, Any]]:
        """One answer per key of `keys` ((text, serialized)), in order: key, found, value,
        partition, task, answered_by, role, stale, lag."""
        results: list[dict[str, Any] | None] = [None] * len(keys)
        by_task: dict[TaskId, list[int]] = {}
        for i, (_, raw) in enumerate(keys):
            by_task.setdefault(
                TaskId(info.subtopology, partition_for(raw, info.partitions)), []
            ).append(i)
        me = self._source.instance_id

        def here(task: TaskId, standby: bool) -> bool:
            indexes = by_task[task]
            copy = self._source.read_local(
                task,
                lambda backend: live_values(
                    info.spec, backend, [backend.get(store, keys[i][1]) for i in indexes]
                ),
                standby=standby,
            )
            if copy is None:
                return False
            for i, value in zip(indexes, copy.value, strict=True):
                results[i] = {
                    "key": render(info.spec.key_serde, keys[i][1]),
                    "found": value is not None,
                    "value": render(info.spec.value_serde, value) if value is not None else None,
                    "partition": task.partition,
                    "task": str(task),
                    "answered_by": me,
                    "role": copy.role,
                    "stale": copy.role != "active",
                    "lag": copy.lag,
                }
            return True

        def ask(instance: str, tasks: list[TaskId], standby: bool, within: Deadline) -> None:
            indexes = [i for task in tasks for i in by_task[task]]
            answer = self._forwarder.forward(
                instance,
                f"/v1/stores/{store}/keys",
                deadline=within,
                body={"keys": [keys[i][0] for i in indexes], "stale": standby},
            )
            answered = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(answered, list) or len(answered) != len(indexes):
                raise Unavailable(f"instance {instance} answered a malformed list of results")
            for i, result in zip(indexes, answered, strict=True):
                results[i] = result

        self._read(
            by_task,
            here,
            ask,
            stale=stale,
            prefer_local=prefer_local,
            only_here=forwarded,
            deadline=deadline,
        )
        done = [r for r in results if r is not None]
        if len(done) != len(results):  # route() returns only when every task was answered
            raise Unavailable(f"{len(results) - len(done)} keys were left unanswered")
        return done

    def entries(
        self,
        store: str,
        info: StoreInfo,
        tasks: Sequence[TaskId],
        low: bytes | None,
        high: bytes | None,
        limit: int,
        *,
        stale: bool,
        local_only: bool,
        deadline: Deadline,
    ) -> tuple[Entries, Where]:
        """The first `limit` entries of `tasks` with `low <= key < high`, in key order, and
        per task who answered (answered_by, role, lag)."""

        def take(backend: TaskStateBackend) -> Entries:
            return list(
                first(live_entries(info.spec, backend, backend.range(store, low, high)), limit)
            )

        def ask(
            instance: str, its: list[TaskId], standby: bool, within: Deadline
        ) -> tuple[list[Entries], Where]:
            answer = self._forwarder.forward(
                instance,
                f"/v1/stores/{store}/raw-entries",
                deadline=within,
                params=_raw_params(its, standby, low, high, limit),
            )
            try:
                part = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in answer["entries"]]
                return [part], dict(answer["tasks"])
            except (KeyError, TypeError, ValueError):
                raise Unavailable(f"instance {instance} answered a malformed page") from None

        parts, where = self._gather(
            tasks,
            take,
            ask,
            stale=stale,
            prefer_local=False,
            only_here=local_only,
            deadline=deadline,
        )
        return list(first(heapq.merge(*parts), limit)), where

    def windows(
        self,
        store: str,
        tasks: Sequence[TaskId],
        low: bytes,
        high: bytes,
        selected: TimeRange,
        limit: int,
        *,
        stale: bool,
        prefer_local: bool,
        only_here: bool,
        deadline: Deadline,
    ) -> tuple[Part, Where]:
        """A page of the windows of `tasks` that `selected` selects, with stored keys
        `low <= k < high` (`processor.query.windows`), and per task who answered."""

        def take(backend: TaskStateBackend) -> Part:
            return read_part(backend, store, low, high, selected, limit)

        def ask(
            instance: str, its: list[TaskId], standby: bool, within: Deadline
        ) -> tuple[list[Part], Where]:
            params = _raw_params(its, standby, low, high, limit)
            params.update(from_ms=selected.from_ms, to_ms=selected.to_ms)
            answer = self._forwarder.forward(
                instance, f"/v1/stores/{store}/raw-windows", deadline=within, params=params
            )
            try:
                entries = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in answer["entries"]]
                horizon = answer["horizon"]
                part = Part(entries, bytes.fromhex(horizon) if horizon is not None else None)
                return [part], dict(answer["tasks"])
            except (KeyError, TypeError, ValueError):
                raise Unavailable(f"instance {instance} answered a malformed page") from None

        parts, where = self._gather(
            tasks,
            take,
            ask,
            stale=stale,
            prefer_local=prefer_local,
            only_here=only_here,
            deadline=deadline,
        )
        return combine(parts, limit), where

    def _gather(
        self,
        tasks: Iterable[TaskId],
        take: Callable[[TaskStateBackend], T],
        ask: Callable[[str, list[TaskId], bool, Deadline], tuple[list[T], Where]],
        *,
        stale: bool,
        prefer_local: bool,
        only_here: bool,
        deadline: Deadline,
    ) -> tuple[list[T], Where]:
        """The parts of a fan-out: `take(backend)` of each task read here, what `ask` returns
        for the tasks read elsewhere; and per task who answered."""
        parts: list[T] = []
        where: Where = {}
        me = self._source.instance_id

        def here(task: TaskId, standby: bool) -> bool:
            copy = self._source.read_local(task, take, standby=standby)
            if copy is None:
                return False
            parts.append(copy.value)
            where[str(task)] = {"answered_by": me, "role": copy.role, "lag": copy.lag}
            return True

        def asked(instance: str, its: list[TaskId], standby: bool, within: Deadline) -> None:
            its_parts, its_where = ask(instance, its, standby, within)
            parts.extend(its_parts)
            where.update(its_where)

        self._read(
            tasks,
            here,
            asked,
            stale=stale,
            prefer_local=prefer_local,
            only_here=only_here,
            deadline=deadline,
        )
        return parts, where

    def _read(
        self,
        tasks: Iterable[TaskId],
        here: Callable[[TaskId, bool], bool],
        ask: Callable[[str, list[TaskId], bool, Deadline], None],
        *,
        stale: bool,
        prefer_local: bool,
        only_here: bool,
        deadline: Deadline,
    ) -> None:
        """Read every task: on this instance's copies only (a forwarded request, a local-scope
        range), else wherever `route` finds them."""
        me = self._source.instance_id
        if only_here:
            for task in tasks:
                if not here(task, stale):
                    raise Unavailable(f"instance {me} holds no readable copy of task {task}")
            return
        route(
            tasks,
            me=me,
            owners=self._source.owners,
            here=here,
            ask=ask,
            stale=stale,
            prefer_local=prefer_local,
            deadline=deadline,
        )


def _raw_params(
    tasks: list[TaskId], standby: bool, low: bytes | None, high: bytes | None, limit: int
) -> dict[str, Any]:
    """The query of a forwarded raw read: an instance's part of a fan-out."""
    params: dict[str, Any] = {"tasks": ",".join(map(str, tasks)), "limit": limit, "stale": standby}
    if low is not None:
        params["low"] = low.hex()
    if high is not None:
        params["high"] = high.hex()
    return params


def first(items: Iterable[tuple[bytes, bytes]], limit: int) -> Iterator[tuple[bytes, bytes]]:
    for count, item in enumerate(items):
        if count >= limit:
            return
        yield item


def _summary(problems: list[str]) -> str:
    unique = list(dict.fromkeys(problems))
    shown = "; ".join(unique[:_PROBLEMS_SHOWN])
    more = len(unique) - _PROBLEMS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")
