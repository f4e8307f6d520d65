"""The tasks of the application and what this worker tells the group about itself.

At startup the topics are checked and created (`processor.runtime.internal_topics`), which gives
the task count of every sub-topology; with the assignment settings that makes this worker's
fingerprint (`processor.runtime.identity`). While the worker runs, the source topics' partition
counts are read again now and then: a topic that gained partitions changes the task list and the
fingerprint (the worker then rejoins the group), or, where state or a repartition topic depends
on the old count, is reported as something the application cannot follow.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from processor.config import WorkerConfig
from processor.errors import BrokerError, CoPartitioningError, TopicError
from processor.ids import TaskId
from processor.kafka.admin import Admin
from processor.runtime.identity import WorkerIdentity, fingerprint_of
from processor.runtime.internal_topics import prepare_topics
from processor.topology.subtopology import SubTopology

__all__ = ["TaskPlan"]

log = logging.getLogger("processor.worker")


class TaskPlan:
    def __init__(
        self,
        admin: Admin,
        config: WorkerConfig,
        subtopologies: Mapping[int, SubTopology],
        *,
        instance_id: str,
        dead_letter_topic: str | None,
    ) -> None:
        """Check and create the topics now; raises TopicError or CoPartitioningError when they
        do not fit the topology."""
        self._admin = admin
        self._config = config
        self._subtopologies = dict(subtopologies)
        self._instance_id = instance_id
        self._dead_letter_topic = dead_letter_topic
        self._source_counts = self._read_source_counts()
        self._unusable_counts: dict[str, int | None] = {}
        self.tasks, self.identity = self._prepare()

    def task_count(self, subtopology: int) -> int:
        return sum(1 for t in self.tasks if t.subtopology == subtopology)

    def follow_source_partitions(self) -> bool:
        """Read the source topics' partition counts again; True when the tasks (and with them
        this worker's identity) changed, so that the worker must rejoin the group."""
        try:
            counts = self._read_source_counts()
        except BrokerError as e:
            log.warning("worker %s: %s (retrying)", self._instance_id, e)
            return False
        if counts == self._unusable_counts:
            return False
        if counts == self._source_counts:
            if self._unusable_counts:
                self._unusable_counts = {}
                log.warning(
                    "worker %s: the source topics have their partition counts again (%s); going on",
                    self._instance_id,
                    ", ".join(f"{t!r} {n}" for t, n in sorted(counts.items())),
                )
            return False
        gone = sorted(t for t, n in counts.items() if n is None)
        if gone:
            self._unusable_counts = counts
            self._report_deleted(gone)
            return False
        change = ", ".join(
            f"{topic!r} {self._source_counts.get(topic)} -> {n}"
            for topic, n in sorted(counts.items())
            if self._source_counts.get(topic) != n
        )
        try:
            tasks, identity = self._prepare()
        except (TopicError, CoPartitioningError) as e:
            self._unusable_counts = counts
            log.error(
                "worker %s: the partition counts of source topics changed (%s), and this "
                "application cannot follow: %s. It goes on with the tasks it had; keyed state "
                "and repartitioned streams stay correct only with the old counts (give the new "
                "partitions to a new application id, or move back to the old count)",
                self._instance_id,
                change,
                e,
            )
            return False
        except BrokerError as e:
            log.warning("worker %s: %s (retrying)", self._instance_id, e)
            return False
        self._source_counts, self._unusable_counts = counts, {}
        self.tasks, self.identity = tasks, identity
        log.warning(
            "worker %s: the partition counts of source topics changed (%s): %d tasks now; "
            "rejoining the group with fingerprint %s",
            self._instance_id,
            change,
            len(tasks),
            identity.fingerprint,
        )
        return True

    def _report_deleted(self, topics: list[str]) -> None:
        waiting = [t for t in self.tasks if self._reads_any(t.subtopology, topics)]
        log.error(
            "worker %s: source topic(s) %s deleted while the application runs: tasks [%s] "
            "read nothing until each is created again with its partitions (%s); they then go "
            "on from where they were, or from its beginning when that is past its end (as it "
            "is in a new topic that has not caught up). The other tasks go on",
            self._instance_id,
            ", ".join(repr(t) for t in topics),
            ", ".join(str(t) for t in waiting),
            ", ".join(f"{t!r} {self._source_counts.get(t)}" for t in topics),
        )

    def _reads_any(self, subtopology: int, topics: list[str]) -> bool:
        return any(t in topics for t in self._subtopologies[subtopology].external_source_topics)

    def _read_source_counts(self) -> dict[str, int | None]:
        sources = sorted(
            {t for s in self._subtopologies.values() for t in s.external_source_topics}
        )
        return self._admin.partition_counts(sources)

    def _prepare(self) -> tuple[list[TaskId], WorkerIdentity]:
        cfg = self._config
        partition_counts = prepare_topics(
            self._admin,
            cfg,
            list(self._subtopologies.values()),
            dead_letter_topic=self._dead_letter_topic,
        )
        tasks = sorted(
            TaskId(sub_id, p) for sub_id, count in partition_counts.items() for p in range(count)
        )
        fingerprint = fingerprint_of(
            self._subtopologies.values(),
            partition_counts,
            num_standby_replicas=cfg.num_standby_replicas,
            balance_factor=cfg.assignment_balance_factor,
            idle_advance_ms=cfg.idle_advance_ms,
            load_aware=cfg.assignment_load_aware,
        )
        return tasks, WorkerIdentity(self._instance_id, fingerprint)
