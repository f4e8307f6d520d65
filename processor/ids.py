"""Identifiers every layer uses: a topic partition, and a task (one partition of one
sub-topology). At the bottom of the package: imports nothing of it but its errors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from processor.errors import ProcessorError

Partition = tuple[str, int]
"""A topic partition: (topic, partition number)."""


@dataclass(frozen=True, order=True)
class TaskId:
    """Task `<subtopology>_<partition>`: partition *partition* of every source topic of sub-topology
    *subtopology*, with its stores and changelog partitions. Orders by (subtopology, partition)."""

    subtopology: int
    partition: int

    def __str__(self) -> str:
        return f"{self.subtopology}_{self.partition}"

    @classmethod
    def parse(cls, text: str) -> TaskId:
        """Inverse of `str()`: `TaskId.parse("1_4") == TaskId(1, 4)`."""
        head, sep, tail = text.partition("_")
        if not sep or not _is_number(head) or not _is_number(tail):
            raise ProcessorError(f"task id {text!r} is not of the form <subtopology>_<partition>")
        return cls(int(head), int(tail))


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def tasks_field(task_ids: Iterable[TaskId]) -> dict[str, list[str]]:
    """`extra=` of a log line about these tasks: `--log-format json` shows them as a `tasks`
    field, so a log shipper can follow one task through assignments, restores and commits."""
    return {"tasks": [str(task_id) for task_id in sorted(task_ids)]}


def tasks_text(task_ids: Iterable[TaskId]) -> str:
    """`0_1, 0_2`: task ids in the text of a log line, in order."""
    return ", ".join(str(task_id) for task_id in sorted(task_ids))
