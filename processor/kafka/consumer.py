"""The group consumer: membership in the application's group, and the source partitions the
worker assigns itself. The only module that touches `confluent_kafka.Consumer`.

Two librdkafka consumers make one `GroupConsumer`: the *member* joins the group (subscribed to
the coordination topic, consuming nothing), commits offsets as the group member and gives the
group metadata transactions fence with; the *fetcher* is in no group (it only `assign()`s) and
reads the source partitions of the worker's tasks. The group's rebalances (the eager protocol's
barrier: every member revokes and rejoins) then never touch what the fetcher reads, so the tasks
that keep their owner keep processing through a membership change; which tasks move, and when,
is the worker's business (`processor.runtime.handover`)."""

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
from processor.kafka.start_offsets import StartOffsets

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
    """A member of group `group_id` subscribed to the coordination topic, and a fetcher consuming
    whatever partitions the worker `assign()`s (see the module docstring). Rebalance callbacks
    take no arguments: the worker recomputes the whole assignment from the group's members."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._settings = dict(settings)
        self._member = Consumer(self._settings)
        self._fetcher = Consumer(fetcher_settings(self._settings))
        self._starts = StartOffsets(self._fetcher)
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
            # The member consumes nothing: calling assign() here stops the client assigning the
            # coordination topic's partitions by itself.
            consumer.assign([])
            on_assign()

        def revoked(consumer: Any, partitions: list[TopicPartition]) -> None:
            self._in_rebalance_callback = True
            try:
                on_revoke()
            finally:
                self._in_rebalance_callback = False
            consumer.unassign()

        def lost(consumer: Any, partitions: list[TopicPartition]) -> None:
            on_lost()
            consumer.unassign()

        def subscribe() -> None:
            self._member.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=lost)

        self._subscription = subscribe
        subscribe()

    def rejoin(self, client_id: str) -> None:
        """Leave the group and join it again as a new member with `client_id` (what the group
        shows other members of this one changed). Closing runs the revoke callback."""
        if self._subscription is None:
            raise RuntimeError("rejoin() before subscribe()")
        self._settle_pending_commit()
        self._member.close()
        self._settings["client.id"] = client_id
        self._member = Consumer(self._settings)
        self._subscription()

    @property
    def member_id(self) -> str | None:
        member: str | None = self._member.memberid()
        return member or None

    def consume(self, max_records: int, timeout: float) -> list[Message]:
        """Records of the assigned partitions; the group's callbacks run first, in here."""
        self.serve_group()
        return cast(list[Message], self._fetcher.consume(max_records, timeout))

    def serve_group(self) -> None:
        """Run the member's rebalance callbacks that are due, and keep it in the group (it must
        be polled within `max.poll.interval.ms`)."""
        event = self._member.poll(0)
        error = None if event is None else event.error()
        if error is not None:
            if error.fatal():
                raise BrokerError(f"the group member failed fatally: {error.str()}")
            log.debug("group member: %s", error.str())

    def assign(self, partitions: Sequence[Partition]) -> None:
        """Consume exactly `partitions` (none: stop consuming), each from its committed offset
        (the partitions consumed now, too: call it when nothing uncommitted is in flight)."""
        self._started_at.clear()
        self._starts.forget()
        self._release_pauses()
        self._fetcher.assign([TopicPartition(t, p) for t, p in partitions])

    def add(
        self,
        partitions: Sequence[Partition],
        *,
        start_at: Mapping[Partition, int] | None = None,
        timeout: float = 30.0,
    ) -> dict[Partition, tuple[int, str | None]]:
        """Start consuming `partitions` too, each from its committed offset (the earliest when it
        has none); the partitions consumed now go on from where they are. Returns what was
        committed for `partitions`: (offset, metadata), offset -1 for none. `start_at`:
        partitions that start at a given offset instead (a sink whose destination keeps its own
        progress).

        Tasks whose state was restoring join this way rather than by `resume()` of paused
        partitions: librdkafka resumed fetching a paused partition only at its next periodic
        check, up to a second later."""
        if not partitions:
            return {}
        start = dict(start_at or {})
        try:
            unread = [p for p in partitions if p not in start]
            committed = self._starts.read(unread, timeout) if unread else {}
            for partition, (offset, _) in committed.items():
                start[partition] = offset if offset >= 0 else OFFSET_BEGINNING
            # The fetcher learns the topics' leaders first: a partition of a topic it has no
            # metadata for waits for librdkafka's once-a-second scan of unknown topics before
            # it is fetched (0.5-1 s without records after every task start; bench/startup.py).
            self._starts.learn_leaders({t for t, _ in partitions}, timeout)
            self._fetcher.incremental_assign(
                [TopicPartition(t, p, start[(t, p)]) for t, p in partitions]
            )
        except KafkaException as e:
            raise BrokerError(f"assigning partitions {list(partitions)} failed: {e.args[0]}") from e
        for partition in partitions:
            self._started_at[partition] = start[partition]
        return {p: committed.get(p, (-1, None)) for p in partitions}

    def prefetch(self, partitions: Sequence[Partition]) -> None:
        """Start reading what `add(partitions)` will need, in the background: their tasks start
        later (`start_offsets`)."""
        self._starts.prefetch(partitions)

    def remove(self, partitions: Sequence[Partition]) -> None:
        """Stop consuming `partitions` (their tasks closed); the others go on."""
        if not partitions:
            return
        gone = set(partitions)
        resume = sorted(self._paused & gone)
        try:
            # A task closed while its state was restoring never had its partitions added:
            # librdkafka refuses to unassign a partition it does not consume.
            consumed = {(tp.topic, tp.partition) for tp in self._fetcher.assignment()}
            if resume:
                self._fetcher.resume([TopicPartition(t, p) for t, p in resume])
            if gone & consumed:
                self._fetcher.incremental_unassign(
                    [TopicPartition(t, p) for t, p in sorted(gone & consumed)]
                )
        except KafkaException as e:
            raise BrokerError(f"unassigning partitions {sorted(gone)} failed: {e.args[0]}") from e
        self._paused -= gone
        self._starts.forget(gone)
        for partition in gone:
            self._started_at.pop(partition, None)

    def fetched_lag(self, partition: Partition) -> int | None:
        """How many records of `partition` are on the broker past what was consumed, as of the
        last fetch response (no request is made); None while not known: no fetch answered
        yet, or no position (nothing consumed since a plain `assign()`)."""
        return self.fetched_lags([partition]).get(partition)

    def fetched_lags(
        self, partitions: Sequence[Partition], *, ends: Mapping[Partition, int] | None = None
    ) -> dict[Partition, int]:
        """`fetched_lag` of each of `partitions` whose lag is known, with one position call
        (`ends`: end offsets to use instead of those the fetches saw)."""
        if not partitions:
            return {}
        try:
            positions = self._fetcher.position([TopicPartition(t, p) for t, p in partitions])
        except KafkaException:
            return {}
        lags: dict[Partition, int] = {}
        for tp in positions:
            partition = (tp.topic, tp.partition)
            try:
                low, high = self._fetcher.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if ends is not None and partition in ends:
                high = ends[partition]
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
                self._fetcher.resume([TopicPartition(t, p) for t, p in sorted(resume)])
            if pause:
                self._fetcher.pause([TopicPartition(t, p) for t, p in sorted(pause)])
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
                self._offsets_client = Consumer(fetcher_settings(self._settings))
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
        self._starts.forget()
        self._release_pauses()
        self._fetcher.unassign()

    def _release_pauses(self) -> None:
        """Resume what this consumer paused, before its assignment changes: librdkafka keeps a
        partition paused across assignments, so one paused now and assigned again later would
        never be fetched (and `pause_only` would not know it is paused)."""
        paused, self._paused = self._paused, set()
        if not paused:
            return
        try:
            self._fetcher.resume([TopicPartition(t, p) for t, p in sorted(paused)])
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
                self._member.commit(offsets=partitions, asynchronous=False)
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
                self._member.commit(offsets=partitions, asynchronous=False)
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
        return self._member.consumer_group_metadata()

    def _settle_pending_commit(self) -> None:
        if self._pending_commit is not None:
            self._pending_commit.join(10.0)  # do not close the client under it
            self._pending_commit = None

    def close(self) -> None:
        self._settle_pending_commit()
        if self._offsets_client is not None:
            self._offsets_client.close()
        self._member.close()
        self._fetcher.close()


def fetcher_settings(member: Mapping[str, Any]) -> dict[str, Any]:
    """The fetcher's settings: the member's (its group id, to read committed offsets), without
    static membership (it never joins) and with a client id of its own."""
    settings = {k: v for k, v in member.items() if k != "group.instance.id"}
    settings["client.id"] = f"{member.get('client.id', 'processor')}-fetch"
    return settings


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
