"""The group consumer: membership in the application's group, and the source partitions the
worker assigns itself. The only module that touches `confluent_kafka.Consumer`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from processor.errors import BrokerError
from processor.ids import Partition

log = logging.getLogger("processor.consumer")


class Message(Protocol):
    """What the runtime reads off a consumed record (a `confluent_kafka.Message`)."""

    def error(self) -> Any: ...
    def topic(self) -> str: ...
    def partition(self) -> int: ...
    def offset(self) -> int: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def timestamp(self) -> tuple[int, int]: ...
    def headers(self) -> list[tuple[str, bytes | None]] | None: ...


class GroupConsumer:
    """One consumer: a member of group `group_id` subscribed to the coordination topic, consuming
    whatever partitions the worker `assign()`s. Rebalance callbacks take no arguments: under the
    eager protocol the worker revokes everything and recomputes everything."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._settings = dict(settings)
        self._consumer = Consumer(self._settings)
        # Asks for end offsets (`end_offsets`); created on first use. Not the group consumer:
        # its requests would queue on the broker connection behind a fetch waiting up to
        # fetch.wait.max.ms for data, which made every exactly-once commit wait too.
        self._offsets_client: Consumer | None = None
        # A commit still waiting for the group coordinator after commit() gave up on it.
        self._pending_commit: threading.Thread | None = None
        # Inside the revoke callback a commit runs on the calling thread, as librdkafka expects
        # of a commit made while the rebalance waits for the callback.
        self._in_rebalance_callback = False
        # The offsets `add()` last assigned explicitly. librdkafka's position() reads as invalid
        # after an assign() until a record of that partition is consumed, and the committed
        # offset can lag what the worker already processed (at-least-once commits on a timer).
        self._started_at: dict[Partition, int] = {}
        self._subscription: Callable[[], None] | None = None
        # Partitions whose fetching is paused (`pause_only`); an assignment resumes them all.
        self._paused: set[Partition] = set()

    def subscribe(
        self,
        topic: str,
        *,
        on_assign: Callable[[], None],
        on_revoke: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        def assigned(consumer: Any, partitions: list[TopicPartition]) -> None:
            # Take nothing now; the worker assigns its tasks' partitions once it has accepted a
            # membership snapshot. Calling assign() here stops the client assigning by itself.
            consumer.assign([])
            on_assign()

        def revoked(consumer: Any, partitions: list[TopicPartition]) -> None:
            self._in_rebalance_callback = True
            try:
                on_revoke()
            finally:
                self._in_rebalance_callback = False
            self._started_at.clear()
            self._release_pauses()
            consumer.unassign()

        def lost(consumer: Any, partitions: list[TopicPartition]) -> None:
            on_lost()
            self._started_at.clear()
            self._release_pauses()
            consumer.unassign()

        def subscribe() -> None:
            self._consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)

        self._subscription = subscribe
        subscribe()

    def rejoin(self, client_id: str) -> None:
        """Leave the group and join it again as a new member with `client_id` (what the group
        shows other members of this one changed). Closing runs the revoke callback."""
        if self._subscription is None:
            raise RuntimeError("rejoin() before subscribe()")
        self._settle_pending_commit()
        self._consumer.close()
        self._started_at.clear()
        self._paused.clear()
        self._settings["client.id"] = client_id
        self._consumer = Consumer(self._settings)
        self._subscription()

    @property
    def member_id(self) -> str | None:
        member: str | None = self._consumer.memberid()
        return member or None

    def consume(self, max_records: int, timeout: float) -> list[Message]:
        return cast(list[Message], self._consumer.consume(max_records, timeout))

    def assign(self, partitions: Sequence[Partition]) -> None:
        """Consume exactly `partitions` (none: stop consuming), each from its committed offset."""
        self._started_at.clear()
        self._release_pauses()
        self._consumer.assign([TopicPartition(t, p) for t, p in partitions])

    def add(
        self,
        partitions: Sequence[Partition],
        consuming: Sequence[Partition],
        *,
        start_at: Mapping[Partition, int] | None = None,
        timeout: float = 30.0,
    ) -> dict[Partition, tuple[int, str | None]]:
        """Start consuming `partitions` too, each from its committed offset (the earliest when it
        has none); `consuming` (the partitions assigned now) go on from where the worker is.
        Returns what was committed for `partitions`: (offset, metadata), offset -1 for none.
        `start_at`: partitions that start at a given offset instead (a sink whose destination
        keeps its own progress).

        Tasks whose state was restoring join this way rather than by `resume()` of paused
        partitions: librdkafka resumed fetching a paused partition only at its next periodic
        check, up to a second later. The eager protocol allows no incremental assignment, so
        this is one whole `assign()` with an explicit offset for every partition.

        Where the worker is: the position of the last record consumed; for a partition nothing
        was consumed from since an earlier `add()`, the offset that call started it at; only
        otherwise the committed offset. Going back to the committed offset of a partition whose
        records were processed but not yet committed would process them twice."""
        if not partitions:
            return {}
        committed: dict[Partition, tuple[int, str | None]] = {}
        try:
            positions = self._consumer.position([TopicPartition(t, p) for t, p in consuming])
            resume: dict[Partition, int] = {}
            for tp in positions:
                partition = (tp.topic, tp.partition)
                if tp.offset >= 0:
                    resume[partition] = tp.offset
                elif partition in self._started_at:
                    resume[partition] = self._started_at[partition]
            resume.update(start_at or {})
            unread = [
                TopicPartition(t, p) for t, p in [*partitions, *consuming] if (t, p) not in resume
            ]
            for tp in self._consumer.committed(unread, timeout) if unread else []:
                resume[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                committed[(tp.topic, tp.partition)] = (tp.offset, tp.metadata)
            self._release_pauses()
            self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in resume.items()])
            self._started_at = resume
        except KafkaException as e:
            raise BrokerError(f"assigning partitions {list(partitions)} failed: {e.args[0]}") from e
        return {p: committed.get(p, (-1, None)) for p in partitions}

    def fetched_lag(self, partition: Partition) -> int | None:
        """How many records of `partition` are on the broker past what was consumed, as of the
        last fetch response (no request is made); None while not known: no fetch answered
        yet, or no position (nothing consumed since a plain `assign()`)."""
        return self.fetched_lags([partition]).get(partition)

    def fetched_lags(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """`fetched_lag` of each of `partitions` whose lag is known, with one position call."""
        if not partitions:
            return {}
        try:
            positions = self._consumer.position([TopicPartition(t, p) for t, p in partitions])
        except KafkaException:
            return {}
        lags: dict[Partition, int] = {}
        for tp in positions:
            partition = (tp.topic, tp.partition)
            try:
                low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            offset = tp.offset
            if offset < 0:
                offset = self._started_at.get(partition, offset)
            if offset == OFFSET_BEGINNING:
                offset = low
            if high >= 0 and offset >= 0:
                lags[partition] = max(0, high - offset)
        return lags

    def pause_only(self, partitions: set[Partition]) -> None:
        """Fetch nothing more of `partitions`, and again of the partitions paused before."""
        if partitions == self._paused:
            return
        resume, pause = self._paused - partitions, partitions - self._paused
        try:
            if resume:
                self._consumer.resume([TopicPartition(t, p) for t, p in sorted(resume)])
            if pause:
                self._consumer.pause([TopicPartition(t, p) for t, p in sorted(pause)])
        except KafkaException as e:
            raise BrokerError(f"pausing or resuming {sorted(pause | resume)} failed: {e}") from e
        self._paused = set(partitions)

    def end_offsets(self, partitions: Sequence[Partition], timeout: float) -> dict[Partition, int]:
        """The offset the next record of each partition will get (its high watermark), in one
        request per broker."""
        if not partitions:
            return {}
        latest = [TopicPartition(t, p, OFFSET_END) for t, p in partitions]
        try:
            if self._offsets_client is None:
                self._offsets_client = Consumer(self._settings)
            found = self._offsets_client.offsets_for_times(latest, timeout)
        except KafkaException as e:
            raise BrokerError(
                f"reading the end offsets of {list(partitions)} failed: {e.args[0]}"
            ) from e
        ends: dict[Partition, int] = {}
        for tp in found:
            if tp.error is not None or tp.offset < 0:
                raise BrokerError(
                    f"reading the end offset of {tp.topic}[{tp.partition}] failed: {tp.error}"
                )
            ends[(tp.topic, tp.partition)] = tp.offset
        return ends

    def unassign(self) -> None:
        self._started_at.clear()
        self._release_pauses()
        self._consumer.unassign()

    def _release_pauses(self) -> None:
        """Resume what this consumer paused, before its assignment changes: librdkafka keeps a
        partition paused across assignments, so one paused now and assigned again later would
        never be fetched (and `pause_only` would not know it is paused)."""
        paused, self._paused = self._paused, set()
        if not paused:
            return
        try:
            self._consumer.resume([TopicPartition(t, p) for t, p in sorted(paused)])
        except KafkaException as e:
            log.warning("resuming %s before a new assignment failed: %s", sorted(paused), e)

    def commit(
        self,
        offsets: Mapping[Partition, int],
        timeout: float = 30.0,
        metadata: Mapping[Partition, str] | None = None,
    ) -> None:
        """Commit `offsets` (the next offset to read per partition, with its `metadata` where
        given) as this group member; the broker refuses it when the member has been fenced out
        of the group.

        Waits at most `timeout` seconds: librdkafka's synchronous commit has no timeout and
        waits for the group coordinator as long as the broker is away. A commit given up on
        goes on by itself (committing offsets the worker has processed, or failing); the next
        call first waits for it, so at most one is outstanding. Inside the revoke callback the
        commit is made on the calling thread, as before the bound was added: a rebalance waits
        for that callback anyway."""
        if not offsets:
            return
        partitions = topic_partitions(offsets, metadata)
        if self._in_rebalance_callback:
            try:
                self._consumer.commit(offsets=partitions, asynchronous=False)
            except KafkaException as e:
                raise BrokerError(f"committing offsets failed: {e.args[0]}") from e
            return
        pending = self._pending_commit
        if pending is not None:
            pending.join(timeout)
            if pending.is_alive():
                raise BrokerError(
                    f"committing offsets failed: an earlier commit has been waiting for the "
                    f"group coordinator for more than {timeout:.0f}s"
                )
            self._pending_commit = None
        failure: list[KafkaException] = []

        def commit() -> None:
            try:
                self._consumer.commit(offsets=partitions, asynchronous=False)
            except KafkaException as e:
                failure.append(e)

        thread = threading.Thread(target=commit, name="processor-commit", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            self._pending_commit = thread
            raise BrokerError(
                f"committing offsets failed: the group coordinator did not answer within "
                f"{timeout:.0f}s"
            )
        if failure:
            raise BrokerError(f"committing offsets failed: {failure[0].args[0]}") from failure[0]

    def group_metadata(self) -> Any:
        return self._consumer.consumer_group_metadata()

    def _settle_pending_commit(self) -> None:
        if self._pending_commit is not None:
            self._pending_commit.join(10.0)  # do not close the client under it
            self._pending_commit = None

    def close(self) -> None:
        self._settle_pending_commit()
        if self._offsets_client is not None:
            self._offsets_client.close()
        self._consumer.close()


def topic_partitions(
    offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None
) -> list[TopicPartition]:
    """Offsets to commit, each with its metadata where there is some (the client refuses a
    None metadata)."""
    notes = metadata or {}
    result = []
    for (topic, partition), offset in offsets.items():
        note = notes.get((topic, partition))
        if note is None:
            result.append(TopicPartition(topic, partition, offset))
        else:
            result.append(TopicPartition(topic, partition, offset, metadata=note))
    return result


def is_partition_eof(error: Any) -> bool:
    return bool(error.code() == KafkaError._PARTITION_EOF)


def is_fatal(error: Any) -> bool:
    return bool(error.fatal())
