"""`processor.state.restore_task`: the lifecycle drawn in the module docstring is the transition
table, every other transition raises, and a promotion changes the same task's state, keeping
its backend, offsets and counts."""

from __future__ import annotations

import itertools
import re

import pytest

from processor.errors import ProcessorError
from processor.ids import TaskId
from processor.state import restore, restore_task
from processor.state.memory import InMemoryBackend
from processor.state.restore_task import (
    TRANSITIONS,
    RestoreState,
    TaskRestore,
    check_transition,
)

TASK = TaskId(0, 3)
STORE = "counts"
TOPIC = "app-counts-changelog"

# `SOURCE --(label)--> TARGET`, found at every position so that a chain `A --> B --> C` gives
# both of its arrows.
_ARROW = re.compile(r"(?=\b([A-Z_]+) --\(([^()]*)\)--> ([A-Z_]+)\b)")


def _drawn_arrows(docstring: str) -> list[tuple[str, str, str]]:
    """Every arrow in the docstring's drawings (its ``` blocks): (source, label, target)."""
    blocks = re.findall(r"```\n(.*?)```", docstring, re.DOTALL)
    arrows = [m for block in blocks for m in _ARROW.findall(block)]
    drawn = sum(block.count("--(") for block in blocks)
    assert len(arrows) == drawn, f"{drawn} arrows drawn but {len(arrows)} understood: {arrows}"
    return arrows


def test_the_drawn_lifecycle_is_the_transition_table() -> None:
    assert restore_task.__doc__ is not None
    arrows = _drawn_arrows(restore_task.__doc__)
    drawn = {(RestoreState[source], RestoreState[target]) for source, _, target in arrows}
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert drawn == table
    assert len(drawn) == len(arrows), "an arrow is drawn twice"
    assert set(TRANSITIONS) == set(RestoreState), "every state has a row"
    drawn_states = {s for arrow in drawn for s in arrow}
    assert drawn_states == set(RestoreState), "every state is drawn"


def test_the_lifecycle_is_drawn_in_one_place() -> None:
    assert restore.__doc__ is not None
    assert "--(" not in restore.__doc__


def test_the_arrow_parser_reads_chains_and_nothing_else() -> None:
    doc = "```\nA --(x)--> B --(y, z)--> C\nPENDING --(p)--> STANDBY\n```\nD --(no)--> E"
    assert _drawn_arrows(doc) == [
        ("A", "x", "B"),
        ("B", "y, z", "C"),
        ("PENDING", "p", "STANDBY"),
    ]


@pytest.mark.parametrize(("source", "target"), list(itertools.product(RestoreState, RestoreState)))
def test_only_the_tables_transitions_are_legal(source: RestoreState, target: RestoreState) -> None:
    if target in TRANSITIONS[source]:
        check_transition(TASK, source, target)
    else:
        with pytest.raises(ProcessorError, match=f"{TASK}.*{source.value} -> {target.value}"):
            check_transition(TASK, source, target)


def _task(*, standby: bool) -> TaskRestore:
    return TaskRestore.of(TASK, InMemoryBackend([STORE]), {STORE: TOPIC}, standby=standby)


def test_a_restore_goes_pending_restoring_completed_and_no_further() -> None:
    task = _task(standby=False)
    assert task.state is RestoreState.PENDING
    task.start_restoring()
    assert task.state is RestoreState.RESTORING
    with pytest.raises(ProcessorError, match="restoring -> standby"):
        task.start_following()
    task.complete()
    assert task.state is RestoreState.COMPLETED
    with pytest.raises(ProcessorError, match="completed -> restoring"):
        task.start_restoring()
    assert task.state is RestoreState.COMPLETED


def _following_standby() -> TaskRestore:
    """A standby that read 40 records (offsets 0-39) and reached its changelog's end once."""
    task = _task(standby=True)
    task.begin(now=100.0, stored={}, watermarks={TOPIC: (0, 40)})
    task.start_following()
    (changelog,) = task.changelogs
    changelog.applied += 40
    task.applied += 40
    changelog.position = 40
    changelog.done = True
    task.caught_up = True
    task.partitions = [(TOPIC, TASK.partition)]
    return task


def test_promotion_is_a_transition_of_the_same_task_keeping_offsets_and_counts() -> None:
    task = _following_standby()
    backend = task.backend
    (changelog,) = task.changelogs

    task.promote()

    assert task.state is RestoreState.PENDING
    assert not task.standby
    assert task.backend is backend
    assert task.changelogs == [changelog]
    assert (changelog.position, changelog.applied, task.applied) == (40, 40, 40)
    progress = task.progress(now=200.0)
    assert (progress.state, progress.standby, progress.caught_up) == (
        RestoreState.PENDING,
        False,
        False,
    )
    assert progress.restored == 0, "the restore has read nothing yet"

    # Its offsets read again (checkpoint 39, 5 records appended since), it restores the tail.
    task.begin(now=200.0, stored={TOPIC: 39}, watermarks={TOPIC: (0, 45)})
    task.start_restoring()
    assert (changelog.start, changelog.position, changelog.end) == (40, 40, 45)
    assert not changelog.done, "a restore reads to the end again"
    assert (task.restored, changelog.restored, task.remaining()) == (0, 0, 5)
    changelog.applied += 5
    task.applied += 5
    assert (task.restored, changelog.restored, task.applied) == (5, 5, 45)
    task.complete()


def test_a_standby_still_pending_is_promoted_without_a_transition() -> None:
    task = _task(standby=True)
    task.retry_at = 1e9  # waiting for the broker
    task.promote()
    assert (task.state, task.standby, task.retry_at) == (RestoreState.PENDING, False, 0.0)
    task.begin(now=0.0, stored={}, watermarks={TOPIC: (0, 0)})
    task.complete()  # nothing to read: a restore, not a standby


def test_only_a_standby_can_be_promoted() -> None:
    task = _task(standby=False)
    with pytest.raises(ProcessorError, match="not a standby"):
        task.promote()
    standby = _following_standby()
    standby.promote()
    with pytest.raises(ProcessorError, match="not a standby"):
        standby.promote()
    assert standby.state is RestoreState.PENDING
