"""Deleting the state directories of tasks this worker no longer holds, after a delay.

Each task keeps its RocksDB under `<state_dir>/<application_id>/<task_id>/`. When an assignment
takes a task away (neither active, nor standby, nor warming up here), its directory stays for
`delay_s` seconds before `StateCleaner.sweep()` deletes it, as Kafka Streams'
`state.cleanup.delay.ms` does: rebalances often hand a task back within moments (a worker
restarting, a probing rebalance undoing a move), and a task that comes back within the delay finds
its state warm and restores only what it missed, instead of the whole changelog. After the delay
the disk is worth more than the slim chance of the task coming back.

The decision is pure (`track_unused`, `due_for_deletion`, `seconds_until_deletion`: names and
times in, names and times out) and `StateCleaner` does the I/O around it. A directory's delay
starts at the first sweep that sees it unused, and starts again whenever a sweep sees it in use.
Only directories named like a task id (`str(TaskId)`, e.g. `0_3`, `12_0`) are ever considered;
other entries of the application directory (`instance-id`, `.lock`, anything else) are left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from processor.errors import ProcessorError
from processor.ids import TaskId

__all__ = [
    "DEFAULT_STATE_CLEANUP_DELAY_S",
    "StateCleaner",
    "due_for_deletion",
    "is_task_dir_name",
    "seconds_until_deletion",
    "track_unused",
]

_log = logging.getLogger("processor.cleanup")

DEFAULT_STATE_CLEANUP_DELAY_S = 600.0
"""Ten minutes, Kafka Streams' default `state.cleanup.delay.ms`."""


def track_unused(
    unused_since: Mapping[str, float], present: Iterable[str], in_use: Collection[str], now: float
) -> dict[str, float]:
    """Since when each task directory in `present` but not `in_use` has been unused: the time
    it had in `unused_since` (it was unused at the previous sweep too), else `now`.

    Directories in use or no longer present are dropped, so they start afresh when next unused.
    """
    return {task: unused_since.get(task, now) for task in present if task not in in_use}


def due_for_deletion(unused_since: Mapping[str, float], now: float, delay_s: float) -> list[str]:
    """The tasks (sorted) whose directories have been unused for at least `delay_s` at `now`."""
    _check_delay(delay_s)
    return sorted(task for task, since in unused_since.items() if now - since >= delay_s)


def seconds_until_deletion(
    unused_since: Mapping[str, float], now: float, delay_s: float
) -> dict[str, float]:
    """Per unused task directory (sorted), the seconds left before it is due; 0.0 once due."""
    _check_delay(delay_s)
    return {task: max(0.0, delay_s - (now - unused_since[task])) for task in sorted(unused_since)}


def _check_delay(delay_s: float) -> None:
    if not delay_s >= 0:  # NaN too
        raise ValueError(f"the state cleanup delay must be >= 0 seconds, got {delay_s}")


def is_task_dir_name(name: str) -> bool:
    """Whether `name` is exactly how a task directory is named: `str(TaskId)` (so not `01_3`)."""
    try:
        return str(TaskId.parse(name)) == name
    except (ProcessorError, ValueError):  # parse() lets int()'s ValueError out, e.g. for "²_1"
        return False


class StateCleaner:
    """Deletes the task directories under `app_state_dir` unused for `delay_s` seconds.

    The worker calls `sweep()` periodically and after every assignment, from one thread, with
    every task whose directory it holds or may open. `clock` gives the time in seconds (a test
    passes a fake one).
    """

    def __init__(
        self,
        app_state_dir: Path,
        delay_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_delay(delay_s)
        self.app_state_dir = app_state_dir
        self.delay_s = delay_s
        self._clock = clock
        self._unused_since: dict[str, float] = {}
        self._deleted_total = 0

    def sweep(self, in_use: Collection[str]) -> list[Path]:
        """Note which task directories are unused and delete those unused for the delay.

        `in_use` holds the string ids of the tasks this worker holds: active, standby, warming
        up. Returns the directories deleted. Never raises: a directory that cannot be deleted is
        logged as a warning and tried again at the next sweep.
        """
        present = self._task_dir_names()
        if present is None:
            return []
        now = self._clock()
        in_use_names = {str(task) for task in in_use}  # a TaskId passed by mistake still counts
        self._unused_since = track_unused(self._unused_since, present, in_use_names, now)
        deleted: list[Path] = []
        for task in due_for_deletion(self._unused_since, now, self.delay_s):
            path = self.app_state_dir / task
            try:
                shutil.rmtree(path)
            except OSError as e:
                _log.warning(
                    "task %s: cannot delete unused state directory %s (%s); retrying at the "
                    "next sweep",
                    task,
                    path,
                    e,
                    extra={"tasks": [task]},
                )
                continue
            unused_s = now - self._unused_since.pop(task)
            _log.info(
                "task %s: deleted state directory %s, unused for %.1fs",
                task,
                path,
                unused_s,
                extra={"tasks": [task]},
            )
            deleted.append(path)
        self._deleted_total += len(deleted)
        return deleted

    @property
    def deleted(self) -> int:
        """How many task directories this cleaner has deleted, for a metric."""
        return self._deleted_total

    def pending(self) -> dict[str, float]:
        """Per task directory unused at the last sweep, seconds until it is deleted (0.0: due,
        deleted at the next sweep). For a status page."""
        return seconds_until_deletion(self._unused_since, self._clock(), self.delay_s)

    def _task_dir_names(self) -> list[str] | None:
        """The names of the task directories present (not following symlinks, so a link is
        never deleted through), or None when the application directory cannot be listed."""
        try:
            with os.scandir(self.app_state_dir) as entries:
                return [
                    entry.name
                    for entry in entries
                    if entry.is_dir(follow_symlinks=False) and is_task_dir_name(entry.name)
                ]
        except FileNotFoundError:
            return []
        except OSError as e:
            _log.warning(
                "cannot list state directory %s (%s); skipping this sweep", self.app_state_dir, e
            )
            return None
