"""Kafka's default partitioner for keyed records, so a query looks for a key where producers put it.

A keyed record's partition is chosen by whoever produces it, not by the broker. Kafka's Java
producer (`BuiltInPartitioner.partitionForKey`) and librdkafka's `murmur2_random` partitioner,
which this processor's workers use for their output, both send a non-null key to
`toPositive(murmur2(key)) % partitions`. A query that answers "which partition, hence which
task and which instance, holds this key?" must compute the same function bit for bit: a key
routed anywhere else is looked up in a store that never saw it.

`murmur2` is Kafka's `org.apache.kafka.common.utils.Utils.murmur2` (MurmurHash2 with Kafka's seed,
little-endian 4-byte blocks, the Java `switch` fall-through for the last 1-3 bytes), returning
the signed 32-bit `int` Java returns. `toPositive` clears the sign bit (`& 0x7fffffff`); it is not
`abs`, which would move half of all keys.

Only non-null keys are covered. Both clients put a record with a null key wherever they like
(sticky or random), so there is nothing to agree on. An empty key is not null: it is hashed, to
`murmur2(b"") == 275646681`, by both clients (librdkafka only treats an empty key like a null
one under its `consistent_random` partitioner, which this processor does not use).
"""

from __future__ import annotations

import struct

__all__ = ["murmur2", "partition_for"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK32 = 0xFFFFFFFF
_SIGN32 = 0x80000000
_POSITIVE = 0x7FFFFFFF

_BLOCKS = struct.Struct("<I").iter_unpack


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` of `data`: a signed 32-bit int, exactly as the Java client's.

    All arithmetic is on unsigned 32-bit values (Python ints masked to 32 bits; Java's `>>>`
    is a plain `>>` on them); the result is reinterpreted as signed only at the end.
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    body = length & ~3
    if body:
        for (k,) in _BLOCKS(memoryview(data)[:body]):
            k = (k * _M) & _MASK32
            k ^= k >> _R
            # k *= m; h *= m; h ^= k. The bits above 32 of both products are garbage that
            # XOR never moves down, so a single mask afterwards does for both.
            h = ((h * _M) ^ (k * _M)) & _MASK32
    if length & 3:
        # Java's fall-through switch over the 1-3 trailing bytes XORs them into h as the low,
        # middle and high byte of a little-endian word, then multiplies once.
        h = ((h ^ int.from_bytes(data[body:], "little")) * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - 0x100000000 if h & _SIGN32 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition, in `[0, partitions)`, that Kafka's Java producer and librdkafka's
    `murmur2_random` partitioner put a record with non-null `key` in."""
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return (murmur2(key) & _POSITIVE) % partitions
