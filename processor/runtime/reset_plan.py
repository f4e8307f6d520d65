"""What `processor reset` does to an application, decided without touching anything.

Starting over means undoing every trace of the application's progress, so that its next run
computes everything again from its inputs, as Kafka Streams' application reset tool does:

1. the consumer group's offsets: every partition of every source topic (streams, tables, and
   global tables where the group committed one) back to its earliest offset, or to the first
   record at or after a time; the group's other offsets (on internal topics) go with the group;
2. the topics the application creates, deleted: changelogs (timers and join buffers are
   stores, so theirs too), repartition and other topics between sub-topologies (foreign-key
   joins, async operators, sinks), the coordination and metadata topics, the source positions
   topic with the topics its sources outside Kafka feed (the sources read again from their
   start: a fed topic kept would then hold every item twice), and the dead-letter topic only
   when asked (it holds user data);
3. local state directories, wiped where given (only the application's directory in each);
4. the progress exactly-once sinks keep outside Kafka, cleared.

Names are derived exactly, from the topology and the functions that name the topics when a
worker creates them, never by matching `<application_id>-`: an application `app-v2` keeps
every topic when `app` is reset. `internal_topics` and `build_plan` are pure; the I/O is in
`processor.runtime.reset`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from processor.config import coordination_topic, metadata_topic
from processor.ids import Partition
from processor.sinks.base import SinkProgress
from processor.topology.external_source import source_positions_topic
from processor.topology.subtopology import SubTopology

__all__ = [
    "OffsetMove",
    "ResetPlan",
    "build_plan",
    "coordination_topic",
    "fed_topics",
    "internal_topics",
    "metadata_topic",
    "source_topics",
]


def internal_topics(
    subtopologies: Sequence[SubTopology], application_id: str, *, dead_letter_topic: str | None
) -> list[str]:
    """Every topic the application's workers create, by exact name, sorted (`fed_topics`
    included); `dead_letter_topic` added when given."""
    names = {coordination_topic(application_id), metadata_topic(application_id)}
    names.update(fed_topics(subtopologies))
    for sub in subtopologies:
        if sub.source is not None:
            names.add(source_positions_topic(application_id))
        names.update(set(sub.source_topics) - set(sub.external_source_topics))
        names.update(sub.repartition_sink_topics)
        names.update(sub.changelog_topics.values())
    if dead_letter_topic is not None:
        names.add(dead_letter_topic)
    return sorted(names)


def fed_topics(subtopologies: Sequence[SubTopology]) -> list[str]:
    """The topics the topology's sources outside Kafka feed (`topology.source(...)`), sorted."""
    return sorted({sub.source.topic for sub in subtopologies if sub.source is not None})


def source_topics(subtopologies: Sequence[SubTopology]) -> list[str]:
    """The topics the application reads that it does not write itself (streams and tables),
    sorted."""
    fed = set(fed_topics(subtopologies))
    return sorted({t for sub in subtopologies for t in sub.external_source_topics} - fed)


@dataclass(frozen=True, order=True)
class OffsetMove:
    """One partition's committed offset (None: none) and the one the reset commits."""

    topic: str
    partition: int
    committed: int | None
    target: int

    def describe(self) -> str:
        was = "none" if self.committed is None else str(self.committed)
        return f"{self.topic}[{self.partition}] {was} -> {self.target}"


@dataclass(frozen=True)
class ResetPlan:
    """Everything one reset changes, in the order it is done."""

    application_id: str
    to_time_ms: int | None
    """None: each partition's earliest offset."""
    offsets: tuple[OffsetMove, ...]
    dropped_offsets: tuple[Partition, ...]
    """Committed offsets on topics that are not sources (internal ones): deleted with the group."""
    group_exists: bool
    topics: tuple[str, ...]
    """The internal topics that exist, to delete."""
    state_dirs: tuple[Path, ...]
    sinks: tuple[SinkProgress, ...]

    @property
    def target(self) -> str:
        if self.to_time_ms is None:
            return "the earliest offset"
        moment = datetime.fromtimestamp(self.to_time_ms / 1000, tz=UTC)
        return f"the first record at or after {moment.isoformat().replace('+00:00', 'Z')}"

    def steps(self) -> list[str]:
        """One line per change, in order."""
        group = self.application_id
        lines: list[str] = []
        if self.group_exists:
            dropped = ", ".join(f"{t}[{p}]" for t, p in self.dropped_offsets)
            lines.append(
                f"delete consumer group {group!r} with its committed offsets"
                + (f" (internal: {dropped})" if dropped else "")
            )
        lines += [f"commit offset of group {group!r}: {m.describe()}" for m in self.offsets]
        lines += [f"delete topic {topic}" for topic in self.topics]
        lines += [f"wipe state directory {path}" for path in self.state_dirs]
        lines += [f"clear {sink.describe()}" for sink in self.sinks]
        return lines

    def summary(self, *, done: bool) -> str:
        verb = "reset" if done else "would reset"
        return (
            f"{verb} application {self.application_id!r}: {len(self.offsets)} source partitions "
            f"to {self.target}, {len(self.topics)} internal topics deleted, "
            f"{len(self.state_dirs)} state directories wiped, {len(self.sinks)} sinks' progress "
            "cleared"
        )


def build_plan(
    application_id: str,
    *,
    to_time_ms: int | None,
    partition_counts: Mapping[str, int | None],
    sources: Iterable[str],
    optional_sources: Collection[str],
    internal: Iterable[str],
    committed: Mapping[Partition, int],
    targets: Mapping[Partition, int],
    state_dirs: Iterable[Path],
    sinks: Iterable[SinkProgress],
) -> ResetPlan:
    """The plan from what was read: `partition_counts` of the source and internal topics (None:
    absent), the group's `committed` offsets, the `targets` read for every source partition.
    Every partition of each of `sources` is moved; of `optional_sources` (global tables, read
    outside the group) only those with a committed offset."""
    moves = []
    moved: set[Partition] = set()
    for topic in sorted(set(sources)):
        for partition in range(partition_counts.get(topic) or 0):
            key = (topic, partition)
            if topic in optional_sources and key not in committed:
                continue
            moves.append(OffsetMove(topic, partition, committed.get(key), targets[key]))
            moved.add(key)
    return ResetPlan(
        application_id=application_id,
        to_time_ms=to_time_ms,
        offsets=tuple(moves),
        dropped_offsets=tuple(sorted(set(committed) - moved)),
        group_exists=bool(committed),
        topics=tuple(t for t in sorted(set(internal)) if partition_counts.get(t) is not None),
        state_dirs=tuple(state_dirs),
        sinks=tuple(sinks),
    )
