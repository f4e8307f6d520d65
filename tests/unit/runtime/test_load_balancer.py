"""The load balancer (`processor.runtime.load_balancer`): only the leader publishes, and only
on complete, fresh rates that stay skewed for an interval; every worker reading the plan it
publishes assigns with the same weights; members the plan was not made for go back to
count-based."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future

import pytest

from processor import config as config_module
from processor.config import WorkerConfig
from processor.errors import ConfigError
from processor.ids import TaskId
from processor.runtime.assignment import Assignment
from processor.runtime.load_balancer import LoadBalancer
from processor.runtime.load_plan import Decision
from processor.status.plan import PLAN_KEY, LoadPlan
from processor.status.record import InstancePhase, InstanceStatus, StatusBoard
from processor.status.signing import SIGNATURE_HEADER, StatusSigner
from tests.unit.runtime.load_shim import weighted_assign

TASKS = [TaskId(0, p) for p in range(12)]
MEMBERS = ["w0", "w1", "w2"]
# Two partitions carry 80% of the records.
SKEWED = {t: (400.0 if t.partition < 2 else 20.0) for t in TASKS}


def _config(**changes: object) -> WorkerConfig:
    settings: dict[str, object] = {
        "bootstrap_servers": "localhost:9092",
        "application_id": "app",
        "assignment_load_aware": True,
    }
    settings.update(changes)
    return WorkerConfig(**settings)  # type: ignore[arg-type]


def _assign(members: Sequence[str], weights: Mapping[TaskId, int] | None) -> dict[TaskId, str]:
    return weighted_assign(members, TASKS, weights)


def decide_now(decision: Callable[[], Decision]) -> Future[Decision]:
    """Runs a decision at once (the worker runs it on a thread of its own)."""
    answer: Future[Decision] = Future()
    answer.set_result(decision())
    return answer


class Worker:
    """One worker's board and balancer; what it publishes is collected in `published`."""

    def __init__(self, instance_id: str, **changes: object) -> None:
        self.board = StatusBoard()
        self.published: list[LoadPlan] = []
        self.balancer = LoadBalancer(
            _config(**changes),
            instance_id,
            self.board,
            self.published.append,
            _assign,
            decide_in=decide_now,
        )


def _report(
    board: StatusBoard,
    active: Mapping[TaskId, str],
    rates: Mapping[TaskId, float],
    *,
    updated_ms: int | None = None,
    phase: InstancePhase = InstancePhase.RUNNING,
) -> None:
    """Every owner's status, as the board would read it."""
    for owner in MEMBERS:
        mine = sorted(t for t, o in active.items() if o == owner)
        status = InstanceStatus(
            owner,
            phase,
            members=tuple(MEMBERS),
            active_tasks=tuple(str(t) for t in mine),
            updated_ms=int(time.time() * 1000) if updated_ms is None else updated_ms,
            task_rates={str(t): rates[t] for t in mine if t in rates},
        )
        board.apply(owner.encode(), status.to_json())


def _running(weights: Mapping[TaskId, int] | None = None) -> Assignment:
    return Assignment(active=_assign(MEMBERS, weights), instances=frozenset(MEMBERS))


def test_only_the_leader_publishes_after_an_interval_of_skew() -> None:
    leader, other = Worker("w0"), Worker("w1")
    running = _running()
    for worker in (leader, other):
        _report(worker.board, running.active, SKEWED)
    for now in range(0, 30, 5):  # the housekeeping ticks every second; the leader looks every 5
        leader.balancer.tick(MEMBERS, running, float(now))
        other.balancer.tick(MEMBERS, running, float(now))
    assert leader.published == [] and other.published == []

    leader.balancer.tick(MEMBERS, running, 30.0)
    other.balancer.tick(MEMBERS, running, 30.0)
    assert other.published == []
    (plan,) = leader.published
    assert plan.leader == "w0" and plan.members == tuple(MEMBERS) and plan.version == 1
    moved = {t for t, o in _assign(MEMBERS, plan.weights).items() if running.active[t] != o}
    assert 1 <= len(moved) <= _config().load_balance_max_moves
    # Not again within the interval, even if the plan has not been applied yet.
    leader.balancer.tick(MEMBERS, running, 45.0)
    assert len(leader.published) == 1


def test_every_worker_reading_the_plan_assigns_with_the_same_weights() -> None:
    workers = [Worker(m) for m in MEMBERS]
    running = _running()
    signer = StatusSigner("token", "app")
    _report(workers[0].board, running.active, SKEWED)
    for now in (0.0, 30.0):
        workers[0].balancer.tick(MEMBERS, running, now)
    (plan,) = workers[0].published
    raw = plan.to_json()
    for worker in workers:
        worker.board.apply(PLAN_KEY, raw, [(SIGNATURE_HEADER, signer.sign(PLAN_KEY, raw))])
    weights = [w.balancer.weights(list(reversed(MEMBERS))) for w in workers]
    assert weights[0] == dict(plan.weights) and weights[0] == weights[1] == weights[2]
    # The next plan counts on from the highest version read.
    workers[0].board.apply(PLAN_KEY, LoadPlan(41, "w0", tuple(MEMBERS), {}).to_json())
    assert workers[0].board.plans.highest_version == 41


def test_a_plan_serves_its_members_and_survivors_not_joiners() -> None:
    worker = Worker("w1")
    weights = {TASKS[0]: 9, TASKS[1]: 9}
    worker.board.apply(PLAN_KEY, LoadPlan(3, "w0", tuple(MEMBERS), weights).to_json())
    assert worker.balancer.weights(MEMBERS) == weights
    # After a failure: standbys were placed by these weights.
    assert worker.balancer.weights(["w1", "w2"]) == weights
    assert worker.balancer.weights([*MEMBERS, "w3"]) is None  # a join: count-based
    assert worker.balancer.weights([]) is None
    off = Worker("w1", assignment_load_aware=False)
    off.board.apply(PLAN_KEY, LoadPlan(3, "w0", tuple(MEMBERS), weights).to_json())
    assert off.balancer.weights(MEMBERS) is None
    worker.board.apply(PLAN_KEY, LoadPlan(4, "w0", tuple(MEMBERS), {}).to_json())
    assert worker.balancer.weights(MEMBERS) is None  # every task weighs 1: count-based


@pytest.mark.parametrize(
    "gap",
    ["a task without a rate", "a stale status", "an owner not running", "the owner disowns it"],
)
def test_no_plan_without_complete_fresh_rates(gap: str) -> None:
    worker = Worker("w0")
    running = _running()
    rates = dict(SKEWED)
    active = dict(running.active)
    kwargs: dict[str, object] = {}
    if gap == "a task without a rate":
        del rates[TASKS[5]]
    elif gap == "a stale status":
        kwargs["updated_ms"] = int(time.time() * 1000) - 60_000
    elif gap == "an owner not running":
        kwargs["phase"] = InstancePhase.WARMING_UP
    else:
        active[TASKS[0]] = "nobody"  # its owner's status does not list it
    _report(worker.board, active, rates, **kwargs)  # type: ignore[arg-type]
    for now in (0.0, 30.0, 60.0, 90.0):
        worker.balancer.tick(MEMBERS, running, now)
    assert worker.published == []


def test_equal_rates_keep_count_based_assignment() -> None:
    worker = Worker("w0")
    running = _running()
    _report(worker.board, running.active, dict.fromkeys(TASKS, 100.0))
    for now in range(0, 300, 5):
        worker.balancer.tick(MEMBERS, running, float(now))
    assert worker.published == []


def test_the_settings_come_from_flags_and_variables() -> None:
    loaded = config_module.load(
        flags={"assignment_load_aware": "true", "load_balance_max_moves": "3"},
        kafka_pairs=[],
        environ={
            "PROCESSOR_BOOTSTRAP_SERVERS": "localhost:9092",
            "PROCESSOR_LOAD_BALANCE_THRESHOLD": "0.5",
            "PROCESSOR_LOAD_BALANCE_INTERVAL_MS": "60000",
        },
        default_application_id="app",
    )
    assert loaded.assignment_load_aware is True
    assert (loaded.load_balance_max_moves, loaded.load_balance_threshold) == (3, 0.5)
    assert loaded.load_balance_interval_ms == 60_000
    default = _config(assignment_load_aware=False)
    assert default.load_balance_interval_ms == 30_000 and default.load_balance_max_moves == 8


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("load_balance_threshold", 0.0),
        ("load_balance_threshold", float("nan")),
        ("load_balance_max_moves", 0),
        ("load_balance_interval_ms", 0),
    ],
)
def test_settings_that_are_refused(setting: str, value: object) -> None:
    with pytest.raises(ConfigError, match=setting):
        _config(**{setting: value})


def test_an_imbalance_no_plan_helps_is_searched_once_an_interval() -> None:
    """One task carries 90% of the records: no assignment evens that out, and computing
    candidates costs assignments, so the leader tries again only after an interval."""
    calls: list[float] = []
    clock = [0.0]

    def counting(members: Sequence[str], weights: Mapping[TaskId, int] | None) -> dict[TaskId, str]:
        calls.append(clock[0])
        return _assign(members, weights)

    board = StatusBoard()
    published: list[LoadPlan] = []
    balancer = LoadBalancer(
        _config(), "w0", board, published.append, counting, decide_in=decide_now
    )
    running = _running()
    rates = {t: (9000.0 if t.partition == 0 else 10.0) for t in TASKS}
    _report(board, running.active, rates)
    for second in range(0, 181):
        clock[0] = float(second)
        balancer.tick(MEMBERS, running, float(second))
    searches = sorted(set(calls))
    assert published == []
    assert searches and all(b - a >= 30.0 for a, b in itertools.pairwise(searches))


class Deferred:
    """Runs decisions only when told (`answer()`), as a thread that has not finished yet."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[[], Decision], Future[Decision]]] = []

    def __call__(self, decision: Callable[[], Decision]) -> Future[Decision]:
        answer: Future[Decision] = Future()
        self.waiting.append((decision, answer))
        return answer

    def answer(self) -> None:
        for decision, answer in self.waiting:
            answer.set_result(decision())
        self.waiting.clear()


def _searching(
    deferred: Deferred,
) -> tuple[LoadBalancer, Assignment, list[LoadPlan]]:
    """A leader over a skew sustained for an interval, which has just asked (at 30 s) for the
    decision that searches, through `deferred`: the balancer, the assignment running, and what
    it publishes."""
    published: list[LoadPlan] = []
    board = StatusBoard()
    balancer = LoadBalancer(_config(), "w0", board, published.append, _assign, decide_in=deferred)
    running = _running()
    _report(board, running.active, SKEWED)
    for now in range(0, 30, 5):  # the imbalance is not sustained for an interval yet
        balancer.tick(MEMBERS, running, float(now))
        deferred.answer()
    balancer.tick(MEMBERS, running, 30.0)
    return balancer, running, published


def test_the_leader_goes_on_while_it_decides_and_publishes_once_the_answer_is_in() -> None:
    """A decision that searches computes about ten assignments (150-250 ms at 100 workers):
    the leader's tasks must not wait for it."""
    deferred = Deferred()
    balancer, running, published = _searching(deferred)
    for now in (31.0, 32.0, 36.0):
        balancer.tick(MEMBERS, running, now)
    assert len(deferred.waiting) == 1, "asked once, not again while it is on its way"
    assert published == []

    deferred.answer()
    balancer.tick(MEMBERS, running, 37.0)
    (plan,) = published
    assert plan.members == tuple(MEMBERS)


def test_an_answer_for_an_assignment_that_is_no_longer_running_is_dropped() -> None:
    deferred = Deferred()
    balancer, _, published = _searching(deferred)
    assert len(deferred.waiting) == 1

    rebalanced = _running()  # the same owners, but a new generation's assignment
    deferred.answer()
    balancer.tick(MEMBERS, rebalanced, 36.0)
    assert published == [], "decided for the assignment before the rebalance"
    for now in range(40, 80, 5):  # the next looks decide again, for the one running now
        balancer.tick(MEMBERS, rebalanced, float(now))
        deferred.answer()
    balancer.tick(MEMBERS, rebalanced, 80.0)
    assert len(published) == 1
