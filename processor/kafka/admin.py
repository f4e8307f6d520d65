"""Cluster metadata, topic creation and deletion, group descriptions and group offsets. The only
module touching `confluent_kafka.admin`."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as NoAnswer
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec, ResourceType

from processor.errors import BrokerError
from processor.ids import Partition
from processor.kafka.group_describer import GroupDescriber, describable

# How long the metadata request sent before a group description may take.
_PROBE_TIMEOUT_S = 5.0
# How much longer than its request timeout a request's answer is waited for. librdkafka answers
# every request within its timeout, except a group request sent on a connection that is down
# (see `describe_group`): past this the request is given up, never waited for for ever.
_ANSWER_GRACE_S = 5.0

T = TypeVar("T")


def _probe_timeout(timeout: float) -> float:
    return min(_PROBE_TIMEOUT_S, timeout)


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    client_id: str
    group_instance_id: str | None
    host: str = ""


@dataclass(frozen=True)
class GroupSnapshot:
    """The group as the coordinator describes it at one moment."""

    stable: bool
    state: str
    members: tuple[GroupMember, ...]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


class Admin:
    def __init__(
        self, settings: Mapping[str, str], timeout: float = 10.0, *, isolate_groups: bool = True
    ) -> None:
        """`isolate_groups`: describe groups from a child process (`group_describer`), which
        librdkafka's abort on the coordinator's path cannot take the caller down with it."""
        self._settings: dict[str, str | int | float | bool] = dict(settings)
        self._client = AdminClient(self._settings)
        self._timeout = timeout
        self._describer: GroupDescriber | None = None
        if isolate_groups and describable(self._settings):
            # Probe, request, and the grace for each: what describing in-process may take.
            within = _probe_timeout(timeout) + timeout + 2 * _ANSWER_GRACE_S
            self._describer = GroupDescriber(self._settings, timeout, answer_within=within)

    def prepare_group_requests(self) -> None:
        """Start the group-describing child now rather than at the first group request (a worker
        calls this first thing: the child starts while the worker checks its topics)."""
        if self._describer is not None:
            # Not starting is not fatal: the first group request tries again, and says why.
            with contextlib.suppress(BrokerError):
                self._describer.start()

    def close(self) -> None:
        """Stop the group-describing child process, if one was started."""
        if self._describer is not None:
            self._describer.close()

    def broker_count(self) -> int:
        try:
            return len(self._client.list_topics(timeout=self._timeout).brokers)
        except KafkaException as e:
            raise BrokerError(f"cannot read cluster metadata: {e.args[0]}") from e

    def partition_counts(self, topics: Sequence[str]) -> dict[str, int | None]:
        """Partition count per topic; None when the topic does not exist."""
        try:
            metadata = self._client.list_topics(timeout=self._timeout)
        except KafkaException as e:
            raise BrokerError(f"cannot read cluster metadata: {e.args[0]}") from e
        counts: dict[str, int | None] = {}
        for topic in topics:
            described = metadata.topics.get(topic)
            if described is None or described.error is not None:
                counts[topic] = None
            else:
                counts[topic] = len(described.partitions)
        return counts

    def topic_configs(self, topics: Sequence[str]) -> dict[str, dict[str, str]]:
        resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
        if not resources:
            return {}
        result: dict[str, dict[str, str]] = {}
        for resource, future in self._client.describe_configs(resources).items():
            try:
                entries = self._answer(future, f"describing topic {resource.name!r}")
            except KafkaException as e:
                raise BrokerError(f"cannot describe topic {resource.name!r}: {e.args[0]}") from e
            result[resource.name] = {k: str(v.value) for k, v in entries.items()}
        return result

    def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create topics; one that already exists (another worker won the race) is fine."""
        if not specs:
            return
        new = [
            NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config))
            for s in specs
        ]
        for name, future in self._client.create_topics(new, request_timeout=self._timeout).items():
            try:
                self._answer(future, f"creating topic {name!r}")
            except KafkaException as e:
                if e.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    continue
                raise BrokerError(f"cannot create topic {name!r}: {e.args[0]}") from e

    def describe_group(self, group_id: str, *, isolated: bool = True) -> GroupSnapshot:
        """The group as its coordinator describes it now: from the child process unless this
        admin was made with `isolate_groups=False`, or `isolated` is False (a worker's look
        before it joins: in-process it answers at once, on the connections the topic checks
        opened, so that workers started together see each other and join together)."""
        if self._describer is None or not isolated:
            return self._describe_group_here(group_id)
        answer = self._describer.describe(group_id)
        members = tuple(GroupMember(*member) for member in answer["members"])
        return GroupSnapshot(answer["state"] == "STABLE", answer["state"], members)

    def _describe_group_here(self, group_id: str) -> GroupSnapshot:
        """The group's description asked by this process's own client.

        librdkafka mishandles a group request whose connection is down when it is sent: the
        request never completes and the client stays wedged, or the process aborts on an
        assertion (confluentinc/librdkafka#4605 and #5397; seen here across a broker restart).
        So the request goes out only right after a metadata request has been answered, which
        makes both rarer, and after any failure the next try uses a new client, whose
        connections are all new."""
        # This client, whatever another thread's failed request makes of `self._client`.
        client = self._client
        try:
            client.list_topics(timeout=_probe_timeout(self._timeout))
        except KafkaException as e:
            self._client = AdminClient(self._settings)
            raise BrokerError(
                f"cannot describe group {group_id!r}: the broker does not answer: {e.args[0]}"
            ) from e
        futures = client.describe_consumer_groups([group_id], request_timeout=self._timeout)
        try:
            description = self._answer(futures[group_id], f"describing group {group_id!r}")
        except KafkaException as e:
            self._client = AdminClient(self._settings)
            raise BrokerError(f"cannot describe group {group_id!r}: {e.args[0]}") from e
        except BrokerError:
            self._client = AdminClient(self._settings)
            raise
        members = tuple(
            GroupMember(m.member_id, m.client_id, m.group_instance_id, m.host or "")
            for m in description.members
        )
        state = description.state
        return GroupSnapshot(state == ConsumerGroupState.STABLE, str(state.name), members)

    def delete_topics(self, topics: Sequence[str]) -> None:
        """Delete topics; one that does not exist (any more) is fine."""
        if not topics:
            return
        futures = self._client.delete_topics(list(topics), request_timeout=self._timeout)
        for name, future in futures.items():
            try:
                self._answer(future, f"deleting topic {name!r}")
            except KafkaException as e:
                if e.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    raise BrokerError(f"cannot delete topic {name!r}: {e.args[0]}") from e

    def committed_offsets(self, group_id: str) -> dict[Partition, int]:
        """The offsets `group_id` has committed, per partition (none when the group is unknown)."""
        request = [ConsumerGroupTopicPartitions(group_id)]
        future = self._client.list_consumer_group_offsets(request, request_timeout=self._timeout)
        try:
            result = self._answer(future[group_id], f"reading the offsets of group {group_id!r}")
        except KafkaException as e:
            raise BrokerError(f"cannot read the offsets of group {group_id!r}: {e.args[0]}") from e
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in result.topic_partitions or []
            if tp.offset >= 0 and tp.error is None
        }

    def offsets_at(
        self, partitions: Sequence[Partition], timestamp_ms: int | None
    ) -> dict[Partition, int]:
        """Per partition, its earliest offset (`timestamp_ms` None), or the first offset whose
        record's timestamp is at or after `timestamp_ms` (the end offset when there is none)."""
        if not partitions:
            return {}
        spec = (
            OffsetSpec.earliest()  # type: ignore[no-untyped-call]
            if timestamp_ms is None
            else OffsetSpec.for_timestamp(timestamp_ms)
        )
        offsets = self._list_offsets(partitions, spec)
        missing = [partition for partition, offset in offsets.items() if offset < 0]
        if missing:  # no record that late: the end, where the next record will be
            offsets.update(self._list_offsets(missing, OffsetSpec.latest()))  # type: ignore[no-untyped-call]
        return offsets

    def _list_offsets(
        self, partitions: Sequence[Partition], spec: OffsetSpec
    ) -> dict[Partition, int]:
        """The offset `spec` names in each of `partitions` (-1: none, e.g. no record that late)."""
        request = {TopicPartition(t, p): spec for t, p in partitions}
        offsets: dict[Partition, int] = {}
        for tp, future in self._client.list_offsets(request, request_timeout=self._timeout).items():
            try:
                offsets[(tp.topic, tp.partition)] = self._answer(
                    future, f"listing the offsets of {tp.topic}[{tp.partition}]"
                ).offset
            except KafkaException as e:
                raise BrokerError(
                    f"cannot list the offsets of {tp.topic}[{tp.partition}]: {e.args[0]}"
                ) from e
        return offsets

    def delete_group(self, group_id: str) -> bool:
        """Delete an empty group with its committed offsets; False when it does not exist."""
        futures = self._client.delete_consumer_groups([group_id], request_timeout=self._timeout)
        try:
            self._answer(futures[group_id], f"deleting group {group_id!r}")
        except KafkaException as e:
            if e.args[0].name() == "GROUP_ID_NOT_FOUND":
                return False
            raise BrokerError(f"cannot delete group {group_id!r}: {e.args[0]}") from e
        return True

    def commit_group_offsets(self, group_id: str, offsets: Mapping[Partition, int]) -> None:
        """Commit `offsets` for `group_id`, which must have no members."""
        if not offsets:
            return
        request = [
            ConsumerGroupTopicPartitions(
                group_id, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
            )
        ]
        future = self._client.alter_consumer_group_offsets(request, request_timeout=self._timeout)
        try:
            result = self._answer(future[group_id], f"committing offsets for group {group_id!r}")
        except KafkaException as e:
            raise BrokerError(f"cannot commit offsets for group {group_id!r}: {e.args[0]}") from e
        failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
        if failed:
            tp = failed[0]
            raise BrokerError(
                f"cannot commit offsets for group {group_id!r}: {tp.topic}[{tp.partition}]: "
                f"{tp.error}"
            )

    def _answer(self, future: Future[T], doing: str) -> T:
        """The answer to a request sent with this client's request timeout. Raises
        `BrokerError` when none comes in time (the request's own error, `KafkaException`, as it
        is)."""
        within = self._timeout + _ANSWER_GRACE_S
        try:
            return future.result(timeout=within)
        except NoAnswer as e:
            raise BrokerError(f"{doing}: no answer from the broker within {within:.0f}s") from e
