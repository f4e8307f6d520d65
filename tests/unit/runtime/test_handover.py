"""The handover of moved tasks (processor.runtime.handover): a gained task starts only once no
other worker claims it, as read after this worker's own claim is on the topic."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future

from hypothesis import given
from hypothesis import strategies as st

from processor.ids import TaskId
from processor.runtime.handover import Handover, claimed_elsewhere

T0, T1, T2 = TaskId(0, 0), TaskId(0, 1), TaskId(0, 2)


def answered(ends: dict[int, int] | None) -> Future[dict[int, int] | None]:
    future: Future[dict[int, int] | None] = Future()
    future.set_result(ends)
    return future


class Metadata:
    """A stand-in for the StatusPublisher: one ordered log of (instance, claims) records, and
    how far this worker has read it."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.log: list[tuple[str, frozenset[str]]] = []
        self.read = 0
        self.fail_claims = 0
        self.claims = 0
        # The broker's answer to the next claim, when the test gives it (else at once).
        self.answer: Future[dict[int, int] | None] | None = None

    def claim(
        self, members: list[str], claiming: Iterable[TaskId]
    ) -> Future[dict[int, int] | None]:
        self.claims += 1
        if self.fail_claims:
            self.fail_claims -= 1
            return answered(None)
        self.log.append((self.me, frozenset(str(t) for t in claiming)))
        if self.answer is not None:
            return self.answer
        return answered({0: len(self.log)})

    def has_read(self, offsets: dict[int, int]) -> bool:
        return self.read >= offsets[0]

    def claims_of(self, instance: str) -> frozenset[str]:
        latest: frozenset[str] = frozenset()
        for who, claims in self.log[: self.read]:
            if who == instance:
                latest = claims
        return latest


def handover(me: str = "w1") -> tuple[Handover, Metadata]:
    metadata = Metadata(me)
    return Handover(me, metadata), metadata  # type: ignore[arg-type]


def test_a_gained_task_waits_until_its_claim_is_read_back_and_nobody_else_claims_it() -> None:
    taker, metadata = handover()
    metadata.log.append(("w0", frozenset({"0_0", "0_1"})))  # w0 runs both
    metadata.read = 1
    taker.begin([T0], ["w0", "w1"], ["w0", "w1"])
    assert taker.take() == []  # its own claim is not read yet
    metadata.read = len(metadata.log)
    assert taker.take() == []  # w0 still claims 0_0
    metadata.log.append(("w0", frozenset({"0_1"})))  # w0 let go of 0_0
    assert taker.take() == []  # not read yet
    metadata.read = len(metadata.log)
    assert taker.take() == [T0]
    assert taker.gaining == set()


def test_claims_of_workers_not_in_the_group_do_not_hold_a_task() -> None:
    taker, metadata = handover()
    metadata.log.append(("gone", frozenset({"0_0"})))  # a worker killed while it ran 0_0
    taker.begin([T0], ["w1"], ["w1"])
    metadata.read = len(metadata.log)
    assert taker.take() == [T0]


def test_a_claim_that_could_not_be_published_is_tried_again() -> None:
    taker, metadata = handover()
    metadata.fail_claims = 1
    taker.begin([T0, T1], ["w1"], ["w1"])
    assert taker.take() == []  # published now
    metadata.read = len(metadata.log)
    assert taker.take() == [T0, T1]


def test_while_the_broker_has_not_taken_the_claim_nothing_starts_and_nothing_waits() -> None:
    """The claim's wait for the broker runs in the background (the tasks that keep their owner
    go on): `take()` only looks, and claims once."""
    taker, metadata = handover()
    metadata.answer = Future()
    taker.begin([T0], ["w1"], ["w1"])
    metadata.read = len(metadata.log)
    assert taker.take() == []
    assert taker.take() == []
    assert metadata.claims == 1
    metadata.answer.set_result({0: len(metadata.log)})
    assert taker.take() == [T0]


def test_a_rebalance_cancels_what_was_not_started() -> None:
    taker, metadata = handover()
    metadata.log.append(("w0", frozenset({"0_0"})))
    taker.begin([T0], ["w0", "w1"], ["w0", "w1"])
    metadata.read = len(metadata.log)
    taker.cancel()
    assert taker.take() == []
    assert taker.gaining == set()


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.booleans()), min_size=1, max_size=12),
    st.data(),
)
def test_two_workers_never_both_take_one_task(
    steps: list[tuple[str, bool]], data: st.DataObject
) -> None:
    """Both claim task 0_0 (two views of the assignment, as during a change of plan), in any
    interleaving of publishing and reading: at most one starts it while the other claims it."""
    log: list[tuple[str, frozenset[str]]] = []
    readers = {"a": 0, "b": 0}

    class Shared(Metadata):
        def claim(
            self, members: list[str], claiming: Iterable[TaskId]
        ) -> Future[dict[int, int] | None]:
            log.append((self.me, frozenset(str(t) for t in claiming)))
            return answered({0: len(log)})

        def has_read(self, offsets: dict[int, int]) -> bool:
            return readers[self.me] >= offsets[0]

        def claims_of(self, instance: str) -> frozenset[str]:
            self.log, self.read = log, readers[self.me]
            return super().claims_of(instance)

    workers = {name: Handover(name, Shared(name)) for name in ("a", "b")}  # type: ignore[arg-type]
    for worker in workers.values():
        worker.begin([T0], ["a", "b"], ["a", "b"])
    running: set[str] = set()
    for name, read in steps:
        if read:
            readers[name] = data.draw(st.integers(readers[name], len(log)))
        if T0 in workers[name].take():
            running.add(name)
    assert len(running) <= 1


def test_claimed_elsewhere_names_the_first_claimant() -> None:
    claims = {"w2": frozenset({"0_1"}), "w0": frozenset({"0_1", "0_2"})}
    assert claimed_elsewhere([T0, T1, T2], claims) == {T1: "w0", T2: "w0"}
