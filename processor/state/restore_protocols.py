"""What the restorer talks to besides a task's backend: where it reads changelogs
(`ChangelogSource`, and the `ChangelogBatch` / `PartitionEnd` items it yields) and whom it tells
(`RestoreListener`, public as `processor.RestoreListener`).

Nothing here imports a Kafka client: `import processor` (which exports `RestoreListener`) and the
in-memory test driver load no `confluent_kafka`. The implementation of `ChangelogSource`,
`processor.kafka.changelog_reader.ChangelogReader`, is imported by the runtime when a worker
starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from processor.ids import Partition, TaskId

__all__ = ["ChangelogBatch", "ChangelogSource", "Partition", "PartitionEnd", "RestoreListener"]


class ChangelogBatch(NamedTuple):
    """Consecutive records of one partition: their (key, value) pairs in offset order (value
    None: a tombstone) and the offset of the last one."""

    topic: str
    partition: int
    last_offset: int
    changes: list[tuple[bytes, bytes | None]]


class PartitionEnd(NamedTuple):
    """The reader reached the end of `topic[partition]`; `offset` is the next offset to read
    (the high watermark, or the last stable offset under read_committed)."""

    topic: str
    partition: int
    offset: int


class ChangelogSource(Protocol):
    """What the restorer reads from: `processor.kafka.changelog_reader.ChangelogReader`.
    Called on the restorer thread only."""

    def watermarks(self, topic: str, partition: int, timeout: float) -> tuple[int, int]: ...
    def high_watermark(self, topic: str, partition: int) -> int | None: ...
    def assign(self, start_offsets: Mapping[Partition, int]) -> None: ...
    def unassign(self, partitions: Iterable[Partition]) -> None: ...
    def pause(self, partitions: Iterable[Partition]) -> None: ...
    def resume(self, partitions: Iterable[Partition]) -> None: ...
    def consume_batches(
        self, max_records: int, timeout: float
    ) -> Sequence[ChangelogBatch | PartitionEnd]: ...
    def close(self) -> None: ...


class RestoreListener(Protocol):
    """Hooks called on the restorer thread, per changelog of a task. A changelog with nothing to
    read gets `on_restore_start(.., start, end)` with `start >= end`, then `on_restore_end(.., 0)`.
    An exception raised by a hook fails the restorer like any other error."""

    def on_restore_start(self, task_id: TaskId, topic: str, start: int, end: int) -> None: ...
    def on_batch_restored(
        self, task_id: TaskId, topic: str, last_offset: int, count: int
    ) -> None: ...
    def on_restore_end(self, task_id: TaskId, topic: str, total: int) -> None: ...
