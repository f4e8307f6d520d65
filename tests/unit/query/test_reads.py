"""How reads are routed, without a network: one forward per instance and step, never one per
key, all within the request's deadline, and standbys asked only with `stale=true`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from processor.ids import TaskId
from processor.query.forwarding import Forwarder, Unavailable
from processor.query.limits import Deadline, Overloaded
from processor.query.partitioner import partition_for
from processor.query.reads import StoreReads, route
from processor.query.source import LocalRead, Owners, StoreInfo
from processor.serdes import IntSerde, StringSerde
from processor.state.backend import TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.topology.graph import StoreSpec

TASKS = [TaskId(0, p) for p in range(6)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Routing:
    """`route()`'s collaborators: owners by a table, reads here recorded, asks recorded and
    failing for the instances in `down`."""

    def __init__(self, owners: Mapping[TaskId, Owners], here: set[TaskId] | None = None) -> None:
        self.table = owners
        self.held_here = here or set()
        self.down: set[str] = set()
        self.read_here: list[tuple[TaskId, bool]] = []
        self.asked: list[tuple[str, list[TaskId], bool, float]] = []

    def owners(self, task: TaskId) -> Owners:
        return self.table[task]

    def here(self, task: TaskId, standby: bool) -> bool:
        if task in self.held_here:
            self.read_here.append((task, standby))
            return True
        return False

    def ask(self, instance: str, tasks: list[TaskId], standby: bool, within: Deadline) -> None:
        self.asked.append((instance, tasks, standby, within.remaining()))
        if instance in self.down:
            raise Unavailable(f"instance {instance} is down")

    def route(self, *, stale: bool, deadline: Deadline | None = None) -> None:
        route(
            TASKS,
            me="w0",
            owners=self.owners,
            here=self.here,
            ask=self.ask,
            stale=stale,
            prefer_local=False,
            deadline=deadline or Deadline(5.0),
        )


def owned(active: str, *standbys: str) -> Owners:
    return Owners(active, standbys)


def spread() -> dict[TaskId, Owners]:
    """w0 (here), w1 and w2 own two tasks each; each task has one standby elsewhere."""
    return {
        TASKS[0]: owned("w0", "w1"),
        TASKS[1]: owned("w0", "w2"),
        TASKS[2]: owned("w1", "w2"),
        TASKS[3]: owned("w1", "w0"),
        TASKS[4]: owned("w2", "w0"),
        TASKS[5]: owned("w2", "w1"),
    }


def test_each_owner_is_asked_once_for_all_its_tasks() -> None:
    routing = Routing(spread(), here={TASKS[0], TASKS[1]})
    routing.route(stale=False)
    assert routing.read_here == [(TASKS[0], False), (TASKS[1], False)]
    assert [(i, t, s) for i, t, s, _ in routing.asked] == [
        ("w1", [TASKS[2], TASKS[3]], False),
        ("w2", [TASKS[4], TASKS[5]], False),
    ]


def test_without_stale_the_first_failure_answers_and_nothing_more_is_asked() -> None:
    routing = Routing(spread(), here={TASKS[0], TASKS[1]})
    routing.down = {"w1"}
    with pytest.raises(Unavailable) as failed:
        routing.route(stale=False)
    assert [i for i, *_ in routing.asked] == ["w1"]
    assert "instance w1 is down" in failed.value.message
    assert "pass stale=true" in failed.value.message


def test_without_stale_a_task_without_owner_answers_before_any_forward() -> None:
    table = spread()
    table[TASKS[5]] = Owners(None, ("w1",))
    routing = Routing(table, here={TASKS[0], TASKS[1]})
    with pytest.raises(Unavailable, match="task 0_5 has no owner right now"):
        routing.route(stale=False)
    assert routing.asked == []


def test_with_stale_an_owner_that_fails_hands_its_tasks_to_standbys_once_each() -> None:
    routing = Routing(spread(), here={TASKS[0], TASKS[1]})
    routing.down = {"w1"}
    routing.held_here.add(TASKS[3])  # a standby here: read here, not asked for
    clock = Clock()
    routing.route(stale=True, deadline=Deadline(4.0, clock=clock))
    assert [(i, t, s) for i, t, s, _ in routing.asked] == [
        ("w1", [TASKS[2], TASKS[3]], False),
        ("w2", [TASKS[4], TASKS[5]], False),
        ("w2", [TASKS[2]], True),
    ]
    assert (TASKS[3], True) in routing.read_here
    # The owners got half the time, the standbys what was left.
    assert [within for _, _, _, within in routing.asked] == [2.0, 2.0, 4.0]


def test_a_standby_holder_that_fails_hands_its_tasks_to_the_next_holder() -> None:
    table = {t: Owners("w1", ("w2", "w3")) for t in TASKS}
    routing = Routing(table)
    routing.down = {"w1", "w2"}
    routing.route(stale=True)
    assert [(i, s) for i, _, s, _ in routing.asked] == [("w1", False), ("w2", True), ("w3", True)]
    assert all(t == TASKS for _, t, _, _ in routing.asked)


def test_when_every_copy_fails_the_request_says_why_once_per_instance() -> None:
    table = {t: Owners("w1", ("w2",)) for t in TASKS}
    routing = Routing(table)
    routing.down = {"w1", "w2"}
    with pytest.raises(Unavailable) as failed:
        routing.route(stale=True)
    assert len(routing.asked) == 2
    message = failed.value.message
    assert "instance w1 is down; instance w2 is down" in message
    assert "no other copy of task 0_0 could answer" in message


def test_when_the_time_runs_out_the_refusal_says_what_failed_first() -> None:
    routing = Routing({t: Owners("w1", ("w2",)) for t in TASKS})
    routing.down = {"w1"}

    def ask(instance: str, tasks: list[TaskId], standby: bool, within: Deadline) -> None:
        if instance == "w1":
            raise Unavailable("instance w1 did not answer within 2.5 s")
        raise Overloaded("the request's time ran out", limit="query_timeout_ms", retry_after_s=2)

    with pytest.raises(Overloaded) as refused:
        route(
            TASKS,
            me="w0",
            owners=routing.owners,
            here=routing.here,
            ask=ask,
            stale=True,
            prefer_local=False,
            deadline=Deadline(5),
        )
    assert refused.value.limit == "query_timeout_ms"
    assert refused.value.detail.startswith("instance w1 did not answer within 2.5 s; then: ")


# -- StoreReads over a Forwarder: whole requests ---------------------------------------------

STORE = "counts"
INFO = StoreInfo(StoreSpec(STORE, StringSerde(), IntSerde()), 0, len(TASKS))


class Source:
    """A `QuerySource` for instance w0, which holds the tasks in `backends`."""

    def __init__(self, owners: Mapping[TaskId, Owners], backends: dict[TaskId, InMemoryBackend]):
        self.table = owners
        self.backends = backends

    @property
    def instance_id(self) -> str:
        return "w0"

    def stores(self) -> Mapping[str, StoreInfo]:
        return {STORE: INFO}

    def owners(self, task: TaskId) -> Owners:
        return self.table[task]

    def endpoint(self, instance: str) -> str | None:
        return f"http://{instance}"

    def instances(self) -> dict[str, dict[str, Any]]:
        return {}

    def read_local(
        self, task: TaskId, read: Callable[[TaskStateBackend], Any], *, standby: bool
    ) -> LocalRead | None:
        backend = self.backends.get(task)
        if backend is None:
            return None
        role = "active" if self.table[task].active == "w0" else "standby"
        if role == "standby" and not standby:
            return None
        return LocalRead(read(backend), role, 0)

    def lags(self) -> dict[str, dict[str, Any]]:
        return {}


def reads(
    owners: Mapping[TaskId, Owners], handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[StoreReads, Counter[str]]:
    calls = Counter[str]()

    def counting(request: httpx.Request) -> httpx.Response:
        calls[request.url.host] += 1
        return handler(request)

    source = Source(
        owners, {t: InMemoryBackend([STORE]) for t in TASKS if owners[t].active == "w0"}
    )
    forwarder = Forwarder(
        instance_id="w0",
        endpoint=source.endpoint,
        token=None,
        max_forwards=8,
        transport=httpx.MockTransport(counting),
    )
    return StoreReads(source, forwarder), calls


def keys(count: int) -> list[tuple[str, bytes]]:
    return [(f"k{i}", f"k{i}".encode()) for i in range(count)]


def test_ten_thousand_keys_of_an_unavailable_owner_cost_one_forward() -> None:
    everything_on_w1 = {t: Owners("w1", ("w2",)) for t in TASKS}
    store_reads, calls = reads(
        everything_on_w1, lambda r: httpx.Response(503, json={"detail": "x"})
    )
    with pytest.raises(Unavailable, match="instance w1 answered 503"):
        store_reads.keys(
            STORE,
            INFO,
            keys(10_000),
            stale=False,
            prefer_local=False,
            forwarded=False,
            deadline=Deadline(5),
        )
    assert calls == {"w1": 1}


def test_with_stale_each_standby_holder_is_asked_once_for_all_its_keys() -> None:
    table = {t: Owners("w1", ("w2" if t.partition % 2 else "w3",)) for t in TASKS}
    asked: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "w1":
            raise httpx.ConnectError("refused", request=request)
        body = json.loads(request.content)
        assert body["stale"] is True
        asked[request.url.host] = len(body["keys"])
        return httpx.Response(
            200,
            json={
                "results": [
                    {"key": k, "found": False, "answered_by": request.url.host}
                    for k in body["keys"]
                ]
            },
        )

    store_reads, calls = reads(table, handler)
    wanted = keys(10_000)
    results = store_reads.keys(
        STORE, INFO, wanted, stale=True, prefer_local=False, forwarded=False, deadline=Deadline(5)
    )
    assert calls == {"w1": 1, "w2": 1, "w3": 1}
    assert sum(asked.values()) == 10_000
    assert [r["key"] for r in results] == [text for text, _ in wanted], "in the order asked"
    odd = {text for text, raw in wanted if partition_for(raw, len(TASKS)) % 2}
    assert {r["key"] for r in results if r["answered_by"] == "w2"} == odd


def test_keys_held_here_are_read_here_one_read_per_task() -> None:
    table = {t: Owners("w0", ()) for t in TASKS}
    store_reads, calls = reads(table, lambda r: pytest.fail("no forward"))
    results = store_reads.keys(
        STORE,
        INFO,
        keys(50),
        stale=False,
        prefer_local=False,
        forwarded=False,
        deadline=Deadline(5),
    )
    assert len(results) == 50 and not any(r["found"] for r in results)
    assert {r["answered_by"] for r in results} == {"w0"} and not calls


def test_a_forwarded_request_is_read_here_only() -> None:
    table = {t: Owners("w1", ()) for t in TASKS}
    store_reads, calls = reads(table, lambda r: pytest.fail("never forwarded twice"))
    with pytest.raises(Unavailable, match="instance w0 holds no readable copy of task"):
        store_reads.keys(
            STORE,
            INFO,
            keys(3),
            stale=False,
            prefer_local=False,
            forwarded=True,
            deadline=Deadline(5),
        )
    assert not calls


def test_a_whole_store_page_asks_each_owner_once() -> None:
    table = {t: Owners(("w0", "w1", "w2")[t.partition % 3], ()) for t in TASKS}

    def handler(request: httpx.Request) -> httpx.Response:
        tasks = request.url.params["tasks"].split(",")
        entries = [(f"{request.url.host}-{t}".encode().hex(), b"1".hex()) for t in tasks]
        where = {t: {"answered_by": request.url.host, "role": "active", "lag": 0} for t in tasks}
        return httpx.Response(200, json={"entries": entries, "tasks": where})

    store_reads, calls = reads(table, handler)
    entries, where = store_reads.entries(
        STORE, INFO, TASKS, None, None, 100, stale=False, local_only=False, deadline=Deadline(5)
    )
    assert calls == {"w1": 1, "w2": 1}
    assert [k for k, _ in entries] == sorted(k for k, _ in entries)
    assert len(entries) == 4 and set(where) == {str(t) for t in TASKS}
