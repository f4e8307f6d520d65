"""The generation id of a classic consumer group, read from outside the group without joining it.

A test asserting "restarting a static member caused no rebalance" compares the generation
before and after; joining the group to learn it would itself start a rebalance.

How: the group coordinator persists a classic group's state in the internal topic
`__consumer_offsets`, one group-metadata record per change (group created, rebalance completed,
member replaced, ...). `group_generation` reads that topic with a plain consumer, by `assign()`
(it never subscribes, never commits, so the coordinator never hears of it), from the start of
every partition up to the end each partition had when the call began, and decodes the newest
group-metadata record of the group:

    key   = int16 key version 2 (record type "group metadata"), string group id
    value = int16 value version, string protocol type, int32 generation, ...  (GroupMetadataValue)

Strings are int16-length-prefixed up to value version 3 (what Kafka 4.1 writes) and
compact (unsigned varint length + 1) from the flexible version 4 on; the generation follows the
protocol type in every version, so nothing after it needs decoding. A record with a null value
(a tombstone) means the group was deleted. Offset commits (key versions 0 and 1) and the
records of KIP-848 groups (key versions 3 and up) are skipped.

The coordinator answers the JoinGroup/SyncGroup that ends a rebalance only once its record is
written, so when every member has its assignment the generation read here is the group's (a
static member replacing its old member id also writes a record, with the same generation);
while a rebalance is in progress it is the last persisted generation. Compare generations only
with the group stable.

Why not something simpler (checked against Kafka 4.1.1 and confluent-kafka 2.16):

- `AdminClient.describe_consumer_groups`: `ConsumerGroupDescription` has no generation; the
  classic DescribeGroups response it is built from carries none.
- `kafka-consumer-groups.sh --describe --state --verbose` (ConsumerGroupCommand) prints a
  GROUP-EPOCH column, but only for KIP-848 (`consumer` protocol) groups: for a classic group the
  Java admin's `ConsumerGroupDescription.groupEpoch()` is empty and the column shows "-". (The
  broker's jars do not include the tools jar either.)
- librdkafka's statistics (`cgrp`) have no generation, only a client-local `rebalance_cnt`
  that restarts at zero with the process; `Consumer.consumer_group_metadata()` serialises the
  member's generation (librdkafka's opaque "CGMDv2:" blob), but only the member itself can read
  it, in a private format.

`__consumer_offsets` is read with `isolation.level=read_uncommitted`: transactional offset
commits live there too, and an open transaction would hold a read_committed reader below the end.
"""

from __future__ import annotations

import struct
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

__all__ = ["group_generation"]

OFFSETS_TOPIC = "__consumer_offsets"
_GROUP_METADATA_KEY_VERSION = 2
_FIRST_FLEXIBLE_VALUE_VERSION = 4
_OFFSET_COMMIT_KEY_VERSIONS = (0, 1)


def group_generation(bootstrap: str, group_id: str, timeout: float = 10.0) -> int:
    """The generation id last persisted for classic consumer group `group_id`.

    Reads `__consumer_offsets` up to its end once (see the module docstring) without joining
    the group. Raises AssertionError when the topic holds no group metadata for the group, or
    only a tombstone (the group was deleted); TimeoutError when the topic cannot be read to its
    end within `timeout` seconds; KafkaException on other client errors.
    """
    deadline = time.monotonic() + timeout
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # confluent-kafka insists on a group id; it is never used to join or to commit.
            "group.id": f"group-generation-probe-{uuid.uuid4().hex}",
            "client.id": "group-generation-probe",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_uncommitted",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends = _partition_ends(consumer, deadline)
        seen, value, other_kinds = _scan(consumer, group_id, ends, deadline)
    finally:
        consumer.close()
    if not seen:
        hint = _hint(other_kinds)
        raise AssertionError(
            f"no group-metadata record for consumer group {group_id!r} in {OFFSETS_TOPIC} "
            f"at {bootstrap}{hint}"
        )
    if value is None:
        raise AssertionError(
            f"consumer group {group_id!r} was deleted: its newest group-metadata record in "
            f"{OFFSETS_TOPIC} is a tombstone"
        )
    return _generation(value)


def _remaining(deadline: float, doing: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"timed out {doing} {OFFSETS_TOPIC}")
    return left


def _partition_ends(consumer: Consumer, deadline: float) -> dict[int, int]:
    """Each non-empty partition's high watermark, now; assigns those partitions from their start."""
    metadata = consumer.list_topics(OFFSETS_TOPIC, timeout=_remaining(deadline, "describing"))
    topic = metadata.topics.get(OFFSETS_TOPIC)
    if topic is None or topic.error is not None:
        raise AssertionError(
            f"{OFFSETS_TOPIC} does not exist yet ({topic.error if topic else 'not in metadata'}):"
            " no consumer group has been created on this cluster"
        )
    ends: dict[int, int] = {}
    starts: list[TopicPartition] = []
    for partition in sorted(topic.partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(OFFSETS_TOPIC, partition),
            timeout=_remaining(deadline, "listing the offsets of"),
            cached=False,
        )
        if high > low:
            ends[partition] = high
            starts.append(TopicPartition(OFFSETS_TOPIC, partition, low))
    if starts:
        consumer.assign(starts)
    return ends


def _scan(
    consumer: Consumer, group_id: str, ends: dict[int, int], deadline: float
) -> tuple[bool, bytes | None, set[int]]:
    """Whether a group-metadata record of `group_id` was seen, the newest one's value (None for
    a tombstone), and the key versions of the group's other records (for error messages)."""
    pending = dict(ends)
    seen = False
    value: bytes | None = None
    other_kinds: set[int] = set()
    while pending:
        message = consumer.poll(min(0.5, _remaining(deadline, "reading")))
        if message is None:
            continue
        partition, offset = message.partition(), message.offset()
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if partition is not None and offset is not None and offset >= ends[partition]:
                    pending.pop(partition, None)
                continue
            raise KafkaException(error)
        if partition is not None and offset is not None and offset + 1 >= ends[partition]:
            pending.pop(partition, None)
        key = message.key()
        decoded = _decode_key(key) if key else None
        if decoded is None or decoded[1] != group_id:
            continue
        if decoded[0] == _GROUP_METADATA_KEY_VERSION:
            seen, value = True, message.value()
        else:
            other_kinds.add(decoded[0])
    return seen, value, other_kinds


def _decode_key(key: bytes) -> tuple[int, str] | None:
    """(key version, group id) of a `__consumer_offsets` key; every group coordinator key type
    starts with the group id as an int16-length string. None if the key is not one."""
    if len(key) < 4:
        return None
    version, length = struct.unpack_from(">hh", key, 0)
    if length < 0 or 4 + length > len(key):
        return None
    try:
        return version, key[4 : 4 + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _generation(value: bytes) -> int:
    """The generation field of a GroupMetadataValue (any version)."""
    (version,) = struct.unpack_from(">h", value, 0)
    position = 2
    if version >= _FIRST_FLEXIBLE_VALUE_VERSION:
        length_plus_one, position = _unsigned_varint(value, position)
        length = length_plus_one - 1
    else:
        (length,) = struct.unpack_from(">h", value, position)
        position += 2
    position += max(length, 0)  # protocolType is not nullable; -1 would read as empty
    (generation,) = struct.unpack_from(">i", value, position)
    return int(generation)


def _unsigned_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _hint(other_kinds: set[int]) -> str:
    if any(kind not in _OFFSET_COMMIT_KEY_VERSIONS for kind in other_kinds):
        return (
            " (its records are those of a KIP-848 consumer, share or streams group:"
            " such groups have epochs, not a classic generation)"
        )
    if other_kinds:
        return " (only offset commits: it was never joined with the classic protocol)"
    return " (no record of it at all: is the group id right, and has a member joined yet?)"
