"""Checking the topics a topology reads and writes, and creating the application's own.

External source and sink topics must exist. All sources of one sub-topology must have the same
partition count (co-partitioning). A repartition topic gets the partition count of the external
topics read with it (a re-keyed stream joining a table), else the task count of the sub-topology
that writes it (or, when that sub-topology waits for it, the count of the topics read with it:
a foreign-key join's subscription and response topics); a changelog topic the task count of
the sub-topology that owns its store.
Internal topics are created when missing and checked when present; nothing is ever deleted or
altered.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from processor.config import WorkerConfig
from processor.errors import CoPartitioningError, TopicError, TopologyError
from processor.kafka.admin import Admin, TopicSpec
from processor.topology.external_source import source_positions_topic
from processor.topology.graph import StoreSpec
from processor.topology.subtopology import SubTopology
from processor.windows.spec import DEFAULT_RETENTION_MARGIN_MS

# How long a topic just created may take to show in the broker's metadata.
_CREATED_VISIBLE_S = 10.0


@dataclass(frozen=True)
class TopicPlan:
    """Task count per sub-topology, and partition count per repartition topic."""

    tasks: dict[int, int]
    repartition: dict[str, int]


def plan_partitions(
    subtopologies: list[SubTopology], external_counts: Mapping[str, int]
) -> TopicPlan:
    """Pure: derive every sub-topology's task count from the external topics' partition counts.
    Raises CoPartitioningError when one sub-topology's sources differ."""
    tasks: dict[int, int] = {}
    repartition: dict[str, int] = {}
    copartitioned = _copartitioned_repartition(subtopologies, external_counts)
    pending = list(subtopologies)
    while pending:
        progressed = False
        for sub in list(pending):
            if sub.source is not None:  # polls one source outside Kafka: one task
                tasks[sub.id] = 1
                pending.remove(sub)
                progressed = True
                continue
            known = {**external_counts, **repartition}
            if not all(t in known for t in sub.source_topics):
                continue
            by_topic = {t: known[t] for t in sub.source_topics}
            if len(set(by_topic.values())) > 1:
                raise CoPartitioningError(sub.id, by_topic)
            tasks[sub.id] = next(iter(by_topic.values()))
            for topic in sub.repartition_sink_topics:
                # Unless the sub-topology reading it already gave it its count (below).
                repartition.setdefault(topic, copartitioned.get(topic, tasks[sub.id]))
            pending.remove(sub)
            progressed = True
        if not progressed and not _copartition_pending(
            pending, {**external_counts, **repartition}, repartition
        ):
            raise TopologyError(
                "sub-topologies "
                + ", ".join(str(s.id) for s in pending)
                + " read repartition topics that no sub-topology writes"
            )
    return TopicPlan(tasks, repartition)


def _copartition_pending(
    pending: list[SubTopology], known: Mapping[str, int], repartition: dict[str, int]
) -> bool:
    """Sub-topologies that read each other's topics (a foreign-key join: the left side writes
    subscriptions the right side reads, the right side answers the left side): in the first
    pending one that reads a topic of known count, the internal topics it reads get that
    count, as they must to be co-partitioned with it. False when none does."""
    written = {t for sub in pending for t in sub.repartition_sink_topics}
    for sub in pending:
        counts = [known[t] for t in sub.source_topics if t in known]
        waiting = [t for t in sub.source_topics if t not in known]
        if counts and all(t in written for t in waiting):
            repartition.update(dict.fromkeys(waiting, counts[0]))
            return True
    return False


def _copartitioned_repartition(
    subtopologies: list[SubTopology], external_counts: Mapping[str, int]
) -> dict[str, int]:
    """Repartition topics read with external topics of one partition count (a re-keyed stream
    joining a table) get that count, as in Kafka Streams, so that they are co-partitioned."""
    counts: dict[str, int] = {}
    for sub in subtopologies:
        external = {external_counts[t] for t in sub.external_source_topics if t in external_counts}
        if len(external) == 1:
            [count] = external
            for topic in set(sub.source_topics) - set(sub.external_source_topics):
                counts[topic] = count
    return counts


def internal_topic_specs(
    config: WorkerConfig,
    subtopologies: list[SubTopology],
    plan: TopicPlan,
    replication_factor: int,
) -> list[TopicSpec]:
    specs = [
        # Never written: the group subscribes to it only to have a membership protocol.
        TopicSpec(config.coordination_topic, 1, replication_factor),
        TopicSpec(config.metadata_topic, 1, replication_factor, {"cleanup.policy": "compact"}),
    ]
    if any(sub.source is not None for sub in subtopologies):
        positions = source_positions_topic(config.application_id)
        # One partition: few keys (one per source), read whole by a source task as it starts.
        specs.append(TopicSpec(positions, 1, replication_factor, {"cleanup.policy": "compact"}))
    for topic, partitions in sorted(plan.repartition.items()):
        specs.append(TopicSpec(topic, partitions, replication_factor, {"cleanup.policy": "delete"}))
    for sub in subtopologies:
        for store in sub.stores:
            topic = sub.changelog_topics[store.name]
            specs.append(
                TopicSpec(topic, plan.tasks[sub.id], replication_factor, changelog_config(store))
            )
    return specs


def changelog_config(store: StoreSpec) -> dict[str, str]:
    """A key-value store's changelog is compacted. A windowed store's (and a stream-stream
    join's buffers') is compacted and, past its retention plus a margin
    (`DEFAULT_RETENTION_MARGIN_MS`), deleted: windows and buffered records expire."""
    if not store.expires:
        return {"cleanup.policy": "compact"}
    retention = store.retention_ms + DEFAULT_RETENTION_MARGIN_MS
    return {"cleanup.policy": "compact,delete", "retention.ms": str(retention)}


def _policy(text: str | None) -> frozenset[str] | None:
    return None if text is None else frozenset(p.strip() for p in text.split(","))


def prepare_topics(
    admin: Admin,
    config: WorkerConfig,
    subtopologies: list[SubTopology],
    *,
    dead_letter_topic: str | None = None,
) -> dict[int, int]:
    """Validate sources and sinks, create or check internal topics, create `dead_letter_topic`
    when missing (one partition: dead letters are few, and read in order); returns the
    partition count (= task count) per sub-topology."""
    replication = min(3, admin.broker_count())
    _create_fed_topics(admin, subtopologies, replication)
    sources = sorted({t for s in subtopologies for t in s.external_source_topics})
    sinks = sorted({t for s in subtopologies for t in s.external_sink_topics})
    counts = admin.partition_counts(sources + sinks)
    missing = [t for t in sources + sinks if counts[t] is None]
    if missing:
        role = "source" if missing[0] in sources else "sink"
        raise TopicError(
            missing[0],
            f"{role} topic does not exist; create it before starting the worker "
            f"(missing: {', '.join(missing)})",
        )
    plan = plan_partitions(subtopologies, {t: c for t, c in counts.items() if c is not None})
    specs = internal_topic_specs(config, subtopologies, plan, replication)
    existing = admin.partition_counts([s.name for s in specs])
    admin.create_topics([s for s in specs if existing[s.name] is None])
    _check_internal(admin, [s for s in specs if existing[s.name] is not None], existing)
    if (
        dead_letter_topic is not None
        and admin.partition_counts([dead_letter_topic])[dead_letter_topic] is None
    ):
        admin.create_topics(
            [TopicSpec(dead_letter_topic, 1, replication, {"cleanup.policy": "delete"})]
        )
    return plan.tasks


def _create_fed_topics(admin: Admin, subtopologies: list[SubTopology], replication: int) -> None:
    """The topics sources outside Kafka feed are created when missing, with the partition count
    each source was declared with (one that exists is used as it is)."""
    fed = {s.source.topic: s.source.partitions for s in subtopologies if s.source is not None}
    if not fed:
        return
    existing = admin.partition_counts(sorted(fed))
    missing = [t for t in sorted(fed) if existing[t] is None]
    admin.create_topics(
        [TopicSpec(t, fed[t], replication, {"cleanup.policy": "delete"}) for t in missing]
    )
    # The broker's metadata may show a topic a moment after its creation returned.
    deadline = time.monotonic() + _CREATED_VISIBLE_S
    while missing and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = admin.partition_counts(missing)
        missing = [t for t in missing if counts[t] is None]


def _check_internal(admin: Admin, specs: list[TopicSpec], counts: dict[str, int | None]) -> None:
    configs = admin.topic_configs([s.name for s in specs])
    for spec in specs:
        if counts[spec.name] != spec.partitions:
            raise TopicError(
                spec.name,
                f"internal topic has {counts[spec.name]} partitions, expected {spec.partitions}; "
                "it was not created by this application with this topology: delete it (its data "
                "is lost) or choose another application id; nothing was changed",
            )
        expected_policy = spec.config.get("cleanup.policy")
        actual_policy = configs[spec.name].get("cleanup.policy")
        if expected_policy is not None and _policy(actual_policy) != _policy(expected_policy):
            raise TopicError(
                spec.name,
                f"internal topic has cleanup.policy={actual_policy}, expected {expected_policy}; "
                "fix it with kafka-configs.sh --alter; nothing was changed",
            )
