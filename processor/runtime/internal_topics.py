"""Checking the topics a topology reads and writes, and creating the application's own.

Source topics must exist, and all sources of one sub-topology must have the same partition
count (co-partitioning); sink topics must exist. Internal topics are created when missing and
checked when present; nothing is ever deleted or altered.
"""

from __future__ import annotations

from processor.config import WorkerConfig
from processor.errors import CoPartitioningError, TopicError
from processor.kafka.admin import Admin, TopicSpec
from processor.topology.subtopology import SubTopology


def internal_topic_specs(config: WorkerConfig, replication_factor: int) -> list[TopicSpec]:
    return [
        # Never written: the group subscribes to it only to have a membership protocol.
        TopicSpec(config.coordination_topic, 1, replication_factor),
        TopicSpec(config.metadata_topic, 1, replication_factor, {"cleanup.policy": "compact"}),
    ]


def prepare_topics(
    admin: Admin, config: WorkerConfig, subtopologies: list[SubTopology]
) -> dict[int, int]:
    """Validate sources and sinks, create or check internal topics; returns the partition count
    (= task count) per sub-topology."""
    sources = sorted({t for s in subtopologies for t in s.source_topics})
    sinks = sorted({t for s in subtopologies for t in s.sink_topics})
    counts = admin.partition_counts(sources + sinks)
    missing = [t for t in sources + sinks if counts[t] is None]
    if missing:
        role = "source" if missing[0] in sources else "sink"
        raise TopicError(
            missing[0],
            f"{role} topic does not exist; create it before starting the worker "
            f"(missing: {', '.join(missing)})",
        )
    tasks_per_subtopology: dict[int, int] = {}
    for sub in subtopologies:
        by_topic = {t: counts[t] or 0 for t in sub.source_topics}
        if len(set(by_topic.values())) > 1:
            raise CoPartitioningError(sub.id, by_topic)
        tasks_per_subtopology[sub.id] = next(iter(by_topic.values()))

    replication = min(3, admin.broker_count())
    specs = internal_topic_specs(config, replication)
    existing = admin.partition_counts([s.name for s in specs])
    admin.create_topics([s for s in specs if existing[s.name] is None])
    _check_internal(admin, [s for s in specs if existing[s.name] is not None], existing)
    return tasks_per_subtopology


def _check_internal(admin: Admin, specs: list[TopicSpec], counts: dict[str, int | None]) -> None:
    configs = admin.topic_configs([s.name for s in specs])
    for spec in specs:
        if counts[spec.name] != spec.partitions:
            raise TopicError(
                spec.name,
                f"internal topic has {counts[spec.name]} partitions, expected {spec.partitions}; "
                "it was not created by this application: delete it or choose another "
                "application id",
            )
        expected_policy = spec.config.get("cleanup.policy")
        actual_policy = configs[spec.name].get("cleanup.policy")
        if expected_policy is not None and actual_policy != expected_policy:
            raise TopicError(
                spec.name,
                f"internal topic has cleanup.policy={actual_policy}, expected {expected_policy}; "
                "fix it with kafka-configs.sh --alter, nothing was changed",
            )
