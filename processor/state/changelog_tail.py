"""Noticing records in a task's changelogs that its owner did not write.

Under at-least-once nothing on the broker stops a worker that stood still past its session
timeout (SIGSTOP, a VM pause) from sending, when it wakes, the changelog records it had handed
to its producer just before: stale values, landing after what the task's new owner wrote. The
stall check before each commit (`processor.runtime.stall`) cannot catch a stall that began
after it, in the few milliseconds of the commit's own writes. A later restore would read the
stale values last and lose counts.

So the owner keeps, per changelog of the task, the end offset up to which the changelog holds
only what this owner knows of (`verified`), and how many records it wrote since. When the
broker's end offset is beyond `verified + written`, someone else wrote in between: the owner
writes its own values of those records' keys again, last (`TaskStores.reassert`). Exactly-once
needs none of this: a replaced worker's transactional producer is fenced.

Pure bookkeeping, no I/O: the committer reads the end offsets and the keys.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ChangelogTail"]


class ChangelogTail:
    """The changelogs of one task (topic -> partition is the task's), as its owner sees them.

    `offsets`: changelog topic -> offset of the last record the task's state includes, as the
    restore left it; a changelog missing there starts at offset 0.
    """

    def __init__(self, offsets: Mapping[str, int]) -> None:
        self._verified = {topic: offset + 1 for topic, offset in offsets.items()}
        self._written: dict[str, int] = {}

    def wrote(self, topic: str, count: int) -> None:
        """This owner handed `count` more records of `topic` to its producer."""
        self._written[topic] = self._written.get(topic, 0) + count

    def foreign(self, ends: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """Topic -> (first, end) offsets of a range holding records this owner did not write,
        given each changelog's end offset read after every record it wrote was acknowledged.
        The range also holds this owner's own records of that stretch."""
        found: dict[str, tuple[int, int]] = {}
        for topic, end in ends.items():
            verified = self._verified.get(topic, 0)
            if end > verified + self._written.get(topic, 0):
                found[topic] = (verified, end)
        return found

    def settle(self, ends: Mapping[str, int]) -> None:
        """Everything up to `ends` is accounted for (checked, and repaired where it was not
        this owner's)."""
        for topic, end in ends.items():
            self._verified[topic] = end
            self._written.pop(topic, None)
