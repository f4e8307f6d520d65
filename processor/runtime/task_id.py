"""The identity of a task: one partition of one sub-topology."""

from __future__ import annotations

from dataclasses import dataclass

from processor.errors import ProcessorError


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
        if not sep or not head.isdigit() or not tail.isdigit():
            raise ProcessorError(f"task id {text!r} is not of the form <subtopology>_<partition>")
        return cls(int(head), int(tail))
