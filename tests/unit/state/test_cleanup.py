"""`processor.state.cleanup`: which task directories are deleted, when, and what survives.

The pure decision (`track_unused`, `due_for_deletion`) is checked against an oracle that reads
the whole history of sweeps: a task is due exactly when it has been present and unused at every
sweep for at least the delay, counted from the first sweep of that unbroken run (a sweep that
sees it in use, or absent, or deletes it, breaks the run). `StateCleaner` is then checked the
same way on a real directory, with a fake clock and deletions that fail on demand.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from processor.ids import TaskId
from processor.state.cleanup import (
    DEFAULT_STATE_CLEANUP_DELAY_S,
    StateCleaner,
    due_for_deletion,
    is_task_dir_name,
    seconds_until_deletion,
    track_unused,
)

DELAY = 10.0
TASKS = ["0_0", "0_1", "1_0", "12_3"]
NOT_TASKS = ["instance-id", ".lock", "lock", "foo", "01_3", "0_3x", "_1", "1_", "²_1", "1_٣"]

task_sets = st.frozensets(st.sampled_from(TASKS))
delays = st.one_of(st.just(0.0), st.sampled_from([DELAY, 0.1, 1e-9]), st.floats(0, 50))
# Time steps: zero, tiny, near the delay, and anything in between.
steps = st.one_of(st.just(0.0), st.sampled_from([1e-9, DELAY, DELAY - 1e-9]), st.floats(0, 30))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Sweep:
    now: float
    present: frozenset[str]
    in_use: frozenset[str]
    deleted: frozenset[str] = field(default_factory=frozenset)

    @property
    def seen_unused(self) -> frozenset[str]:
        return self.present - self.in_use


def unused_run_start(history: list[Sweep], task: str) -> float | None:
    """When the unbroken run of sweeps that saw `task` unused, up to the last one, began; None
    when the last sweep did not see it unused. A deletion ends a run: a directory present
    after its deletion is a new one."""
    start = None
    for index in range(len(history) - 1, -1, -1):
        sweep = history[index]
        ended_by_deletion = index < len(history) - 1 and task in sweep.deleted
        if task not in sweep.seen_unused or ended_by_deletion:
            break
        start = sweep.now
    return start


def last_seen_in_use(history: list[Sweep], task: str) -> float | None:
    return max((sweep.now for sweep in history if task in sweep.in_use), default=None)


def check_decision(history: list[Sweep], due: Collection[str], delay_s: float) -> None:
    """The properties of one sweep's decision, the last of `history`."""
    sweep = history[-1]
    assert not set(due) & sweep.in_use, "an in-use task was due"
    assert set(due) <= sweep.present
    for task in due:
        in_use_at = last_seen_in_use(history, task)
        assert in_use_at is None or sweep.now - in_use_at >= delay_s, "due before the delay"
    for task in TASKS:
        start = unused_run_start(history, task)
        expected = start is not None and sweep.now - start >= delay_s
        assert (task in due) == expected, (task, start, sweep.now, delay_s)


# -- the pure decision ------------------------------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(
    delay_s=delays,
    sweeps=st.lists(st.tuples(steps, task_sets, task_sets, st.booleans()), max_size=25),
)
def test_decision_matches_the_history_oracle(
    delay_s: float, sweeps: list[tuple[float, frozenset[str], frozenset[str], bool]]
) -> None:
    """Never an in-use task, never before the delay, always once it has elapsed; whether each
    sweep's deletions succeed (the task is forgotten) or fail (it stays due) is drawn too."""
    now = 0.0
    unused_since: dict[str, float] = {}
    history: list[Sweep] = []
    for step, present, in_use, deletions_succeed in sweeps:
        now += step
        history.append(Sweep(now, present, in_use))
        unused_since = track_unused(unused_since, present, in_use, now)
        due = due_for_deletion(unused_since, now, delay_s)
        check_decision(history, due, delay_s)
        assert due == sorted(due)
        if deletions_succeed:
            history[-1].deleted = frozenset(due)
            for task in due:
                del unused_since[task]


@given(present=task_sets, in_use=task_sets, now=st.floats(-1e6, 1e6))
def test_zero_delay_makes_every_unused_directory_due_at_once(
    present: frozenset[str], in_use: frozenset[str], now: float
) -> None:
    unused_since = track_unused({}, present, in_use, now)
    assert due_for_deletion(unused_since, now, 0.0) == sorted(present - in_use)


@given(
    unused_since=st.dictionaries(st.sampled_from(TASKS), st.floats(0, 100)),
    now=st.floats(0, 200),
    delay_s=delays,
)
def test_seconds_until_deletion_is_zero_exactly_when_due(
    unused_since: dict[str, float], now: float, delay_s: float
) -> None:
    left = seconds_until_deletion(unused_since, now, delay_s)
    assert list(left) == sorted(unused_since)
    due = set(due_for_deletion(unused_since, now, delay_s))
    for task, seconds in left.items():
        assert (seconds == 0.0) == (task in due)
        assert seconds >= 0.0
        assert seconds <= delay_s or now < unused_since[task]


@pytest.mark.parametrize("delay_s", [-1.0, -1e-9, math.nan])
def test_a_negative_or_nan_delay_is_refused(delay_s: float, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="delay"):
        StateCleaner(tmp_path, delay_s)
    with pytest.raises(ValueError, match="delay"):
        due_for_deletion({}, 0.0, delay_s)


def test_task_dir_names_are_exactly_task_ids() -> None:
    assert all(is_task_dir_name(name) for name in [*TASKS, str(TaskId(123, 4567))])
    assert not any(is_task_dir_name(name) for name in NOT_TASKS)


# -- StateCleaner on a real directory -----------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_dirs(root: Path, *names: str) -> None:
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "CURRENT").write_text("MANIFEST-000001\n")


def test_default_delay_is_ten_minutes() -> None:
    assert DEFAULT_STATE_CLEANUP_DELAY_S == 600.0


def test_deletes_an_unused_directory_once_the_delay_has_elapsed_never_earlier(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    make_dirs(tmp_path, "0_1", "0_2")
    cleaner = StateCleaner(tmp_path, DELAY, clock=clock)
    assert cleaner.sweep(["0_2"]) == []
    assert cleaner.pending() == {"0_1": DELAY}
    clock.advance(DELAY - 0.001)
    assert cleaner.sweep(["0_2"]) == []
    assert cleaner.pending() == {"0_1": pytest.approx(0.001)}
    clock.advance(0.001)
    with caplog.at_level(logging.INFO, logger="processor.cleanup"):
        assert cleaner.sweep(["0_2"]) == [tmp_path / "0_1"]
    assert not (tmp_path / "0_1").exists()
    assert (tmp_path / "0_2" / "CURRENT").exists()
    assert cleaner.pending() == {}
    assert cleaner.deleted == 1
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "0_1" in record.getMessage()
    assert str(tmp_path / "0_1") in record.getMessage()
    assert "unused for 10.0s" in record.getMessage()


def test_zero_delay_deletes_at_the_first_sweep_that_sees_the_directory_unused(
    tmp_path: Path, clock: FakeClock
) -> None:
    make_dirs(tmp_path, "3_0")
    cleaner = StateCleaner(tmp_path, 0.0, clock=clock)
    assert cleaner.sweep(["3_0"]) == []
    assert cleaner.sweep([]) == [tmp_path / "3_0"]


def test_a_directory_in_use_again_before_the_delay_survives_and_its_timer_restarts(
    tmp_path: Path, clock: FakeClock
) -> None:
    make_dirs(tmp_path, "0_1")
    cleaner = StateCleaner(tmp_path, DELAY, clock=clock)
    cleaner.sweep([])
    clock.advance(DELAY - 1)
    cleaner.sweep(["0_1"])  # the task came back
    assert cleaner.pending() == {}
    clock.advance(1)
    assert cleaner.sweep([]) == []  # unused again: a new delay starts now
    assert cleaner.pending() == {"0_1": DELAY}
    clock.advance(DELAY - 0.5)
    assert cleaner.sweep([]) == []
    assert (tmp_path / "0_1" / "CURRENT").exists()
    clock.advance(0.5)
    assert cleaner.sweep([]) == [tmp_path / "0_1"]


def test_only_task_directories_are_touched(tmp_path: Path, clock: FakeClock) -> None:
    app = tmp_path / "app"
    make_dirs(app, "0_1", "12_0", "foo", "01_3", "0_3x")
    (app / "instance-id").write_text("host-1234abcd\n")
    (app / ".lock").write_text("4242")
    (app / "lock").write_text("")
    (app / "0_4").write_text("a file named like a task")
    make_dirs(tmp_path, "elsewhere")
    (app / "0_5").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    cleaner = StateCleaner(app, 0.0, clock=clock)

    assert sorted(cleaner.sweep([])) == [app / "0_1", app / "12_0"]

    survivors = {"foo", "01_3", "0_3x", "instance-id", ".lock", "lock", "0_4", "0_5"}
    assert {path.name for path in app.iterdir()} == survivors
    assert (app / "instance-id").read_text() == "host-1234abcd\n"
    assert (tmp_path / "elsewhere" / "CURRENT").exists()
    assert cleaner.pending() == {}


def test_a_failed_deletion_is_logged_and_retried_at_the_next_sweep(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_dirs(tmp_path, "2_7")
    real_rmtree = shutil.rmtree
    attempts: list[Path] = []

    def rmtree_failing_once(path: Path) -> None:
        attempts.append(path)
        if len(attempts) == 1:
            raise PermissionError(13, "Permission denied", str(path))
        real_rmtree(path)

    monkeypatch.setattr(shutil, "rmtree", rmtree_failing_once)
    cleaner = StateCleaner(tmp_path, DELAY, clock=clock)
    cleaner.sweep([])
    clock.advance(DELAY)

    with caplog.at_level(logging.INFO, logger="processor.cleanup"):
        assert cleaner.sweep([]) == []
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert str(tmp_path / "2_7") in warning.getMessage()
    assert "Permission denied" in warning.getMessage()
    assert (tmp_path / "2_7").exists()
    assert cleaner.pending() == {"2_7": 0.0}
    assert cleaner.deleted == 0

    clock.advance(1)
    assert cleaner.sweep([]) == [tmp_path / "2_7"]
    assert attempts == [tmp_path / "2_7", tmp_path / "2_7"]
    assert not (tmp_path / "2_7").exists()


def test_a_directory_that_vanishes_before_deletion_is_logged_then_forgotten(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    make_dirs(tmp_path, "0_0")
    real_rmtree = shutil.rmtree

    def rmtree_after_someone_else(path: Path) -> None:
        real_rmtree(path)
        real_rmtree(path)  # raises FileNotFoundError

    monkeypatch.setattr(shutil, "rmtree", rmtree_after_someone_else)
    cleaner = StateCleaner(tmp_path, 0.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="processor.cleanup"):
        assert cleaner.sweep([]) == []
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert str(tmp_path / "0_0") in caplog.records[0].getMessage()
    assert cleaner.sweep([]) == []
    assert cleaner.pending() == {}


def test_a_missing_application_directory_is_nothing_to_clean(clock: FakeClock) -> None:
    cleaner = StateCleaner(Path("/nonexistent/processor/app"), 0.0, clock=clock)
    assert cleaner.sweep([]) == []
    assert cleaner.pending() == {}


def test_task_ids_given_as_task_id_objects_still_count_as_in_use(
    tmp_path: Path, clock: FakeClock
) -> None:
    make_dirs(tmp_path, "0_1")
    cleaner = StateCleaner(tmp_path, 0.0, clock=clock)
    assert cleaner.sweep([TaskId(0, 1)]) == []  # type: ignore[list-item]
    assert (tmp_path / "0_1").exists()


class CleanerMachine(RuleBasedStateMachine):
    """A real application directory under random assignments, directories (re)created by
    tasks, time passing and deletions failing: every sweep's deletions must match the oracle."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="cleanup-"))
        (self.root / "instance-id").write_text("me\n")
        (self.root / "foo").mkdir()
        self.clock = FakeClock()
        self.cleaner = StateCleaner(self.root, DELAY, clock=self.clock)
        self.in_use: frozenset[str] = frozenset()
        self.history: list[Sweep] = []
        self.deletions_fail = False
        self._real_rmtree: Callable[[Path], None] = shutil.rmtree
        shutil.rmtree = self._rmtree  # type: ignore[assignment]

    def _rmtree(self, path: Path) -> None:
        if self.deletions_fail:
            raise PermissionError(13, "Permission denied", str(path))
        self._real_rmtree(path)

    def teardown(self) -> None:
        shutil.rmtree = self._real_rmtree  # type: ignore[assignment]
        shutil.rmtree(self.root)

    @rule(task=st.sampled_from(TASKS))
    def task_writes_its_directory(self, task: str) -> None:
        (self.root / task).mkdir(exist_ok=True)

    @rule(in_use=task_sets)
    def assign(self, in_use: frozenset[str]) -> None:
        self.in_use = in_use

    @rule(seconds=steps)
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(fail=st.booleans())
    def deletions_start_or_stop_failing(self, fail: bool) -> None:
        self.deletions_fail = fail

    @rule()
    def sweep(self) -> None:
        present = frozenset(task for task in TASKS if (self.root / task).is_dir())
        self.history.append(Sweep(self.clock.now, present, self.in_use))
        deleted = self.cleaner.sweep(self.in_use)
        names = frozenset(path.name for path in deleted)
        self.history[-1].deleted = names
        assert self.cleaner.deleted == sum(len(sweep.deleted) for sweep in self.history)
        assert all(path.parent == self.root for path in deleted)
        assert not any((self.root / task).exists() for task in names)
        if self.deletions_fail:
            assert not names
        else:
            check_decision(self.history, names, DELAY)

    @invariant()
    def other_entries_survive(self) -> None:
        assert (self.root / "instance-id").read_text() == "me\n"
        assert (self.root / "foo").is_dir()

    @invariant()
    def pending_lists_exactly_the_unused_directories_seen_at_the_last_sweep(self) -> None:
        if not self.history:
            return
        last = self.history[-1]
        expected = {task for task in last.seen_unused if task not in last.deleted}
        assert set(self.cleaner.pending()) == expected


TestCleanerMachine = CleanerMachine.TestCase
TestCleanerMachine.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
