"""Queries read a task's state without the lock rebalances take (`TaskManager.read`): reads run
side by side, a close waits for the reads in progress (a bounded time), and a read that a close
cut short answers "no copy" rather than a partial result."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from processor.ids import TaskId
from processor.runtime import store_readers as readers_module
from processor.runtime.task import TaskState
from processor.runtime.task_manager import TaskManager
from processor.state.backend import TaskStateBackend
from processor.state.budget import MemoryBudget
from processor.state.memory import InMemoryBackend

TASK = TaskId(0, 0)


class RunningTask:
    """What `TaskManager.read` and `close_active` use of a running `StreamTask`."""

    def __init__(self, backend: InMemoryBackend) -> None:
        self.id = TASK
        self.partitions: list[tuple[str, int]] = [("in", TASK.partition)]
        self.state = TaskState.RUNNING
        self.stores: Any = SimpleNamespace(backend=backend)
        self.closed_at: float | None = None

    def close(self, *, close_backend: bool = True) -> None:
        if close_backend:
            self.stores.backend.close()
        self.stores = None
        self.closed_at = time.monotonic()


def manager(tmp_path: Path) -> tuple[TaskManager, RunningTask]:
    tasks = TaskManager({}, None, tmp_path, lambda wipe: None, memory=MemoryBudget(1 << 20))  # type: ignore[arg-type]
    backend = InMemoryBackend(["s"])
    backend.write({"s": [(b"k", b"v")]}, {})
    task = RunningTask(backend)
    tasks.tasks[TASK] = task  # type: ignore[assignment]
    return tasks, task


def blocking_read(entered: threading.Event, release: threading.Event) -> Any:
    def read(backend: TaskStateBackend) -> Any:
        entered.set()
        assert release.wait(5)
        return backend.get("s", b"k")

    return read


def test_reads_run_side_by_side(tmp_path: Path) -> None:
    tasks, _ = manager(tmp_path)
    entered = [threading.Event(), threading.Event()]
    release = threading.Event()
    results: list[Any] = []
    readers = [
        threading.Thread(
            target=lambda e=e: results.append(
                tasks.read(TASK, blocking_read(e, release), standby=False)
            )
        )
        for e in entered
    ]
    for reader in readers:
        reader.start()
    try:
        assert all(e.wait(2) for e in entered), "the second read started while the first ran"
    finally:
        release.set()
        for reader in readers:
            reader.join(5)
    assert results == [(b"v", "active", 0)] * 2


def test_a_close_waits_for_the_read_in_progress(tmp_path: Path) -> None:
    tasks, task = manager(tmp_path)
    entered, release = threading.Event(), threading.Event()
    results: list[Any] = []
    reader = threading.Thread(
        target=lambda: results.append(
            tasks.read(TASK, blocking_read(entered, release), standby=False)
        )
    )
    reader.start()
    assert entered.wait(2)
    threading.Timer(0.2, release.set).start()
    began = time.monotonic()
    tasks.close_active()  # takes the lock at once, then waits for the reader
    reader.join(5)
    assert 0.1 < time.monotonic() - began < readers_module.READ_DRAIN_TIMEOUT_S
    assert results == [(b"v", "active", 0)]
    assert task.closed_at is not None
    assert tasks.read(TASK, lambda b: b.get("s", b"k"), standby=False) is None


def test_a_read_that_outlives_the_wait_answers_no_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers_module, "READ_DRAIN_TIMEOUT_S", 0.1)
    tasks, task = manager(tmp_path)
    entered, release = threading.Event(), threading.Event()
    results: list[Any] = []
    reader = threading.Thread(
        target=lambda: results.append(
            tasks.read(TASK, blocking_read(entered, release), standby=False)
        )
    )
    reader.start()
    assert entered.wait(2)
    began = time.monotonic()
    tasks.close_active()
    assert time.monotonic() - began < 1.0, "the close waited a bounded time"
    assert task.closed_at is not None
    deadline = time.monotonic() + 5
    while TASK in tasks.held():  # the state thread closes the backend
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()  # the read goes on against a closed backend, and fails
    reader.join(5)
    assert results == [None]


def test_a_read_that_fails_on_an_open_backend_raises(tmp_path: Path) -> None:
    tasks, _ = manager(tmp_path)

    def broken(backend: TaskStateBackend) -> Any:
        raise KeyError("unknown store")

    with pytest.raises(KeyError):
        tasks.read(TASK, broken, standby=False)
    assert tasks.read(TASK, lambda b: b.get("s", b"k"), standby=False) == (b"v", "active", 0)
