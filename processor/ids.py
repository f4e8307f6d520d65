"""Identifiers every layer uses: a topic partition, and a task (one partition of one
sub-topology). At the bottom of the package: imports nothing of it but its errors."""

from __future__ import annotations

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
