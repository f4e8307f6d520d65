"""Kafka's default partitioner: the hash vectors Kafka and librdkafka test themselves against, a
line-by-line transliteration of the Java code as an oracle, and range properties.

`tests/integration/test_partitioner_agrees.py` checks the same function against where librdkafka
really puts records on a broker.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.query.partitioner import murmur2, partition_for

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def _signed(value: int) -> int:
    """A 32-bit pattern as the Java `int` it is (librdkafka writes its vectors in hex)."""
    return value - 2**32 if value >= 2**31 else value


# apache/kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
KAFKA_UTILS_TEST = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (bytes([ord("a"), ord("b"), ord("c")]), 479470107),
]

# confluentinc/librdkafka, src/rdmurmur2.c, unittest_murmur2 ("java_murmur2_results"): every
# remainder length 0-3, and a key longer than a few blocks at each of 4 offsets.
_UNALIGNED = b"PreAmbleWillBeRemoved,ThePrePartThatIs"
LIBRDKAFKA_UNITTEST = [
    (b"kafka", _signed(0xD067CF64)),
    (b"giberish123456789", _signed(0x8F552B0C)),
    (b"1234", _signed(0x9FC97B14)),
    (b"234", _signed(0xE7C009CA)),
    (b"34", _signed(0x873930DA)),
    (b"4", _signed(0x5A4B5CA1)),
    (_UNALIGNED, _signed(0x78424F1C)),
    (_UNALIGNED[1:], _signed(0x4A62B377)),
    (_UNALIGNED[2:], _signed(0xE0E4E09E)),
    (_UNALIGNED[3:], _signed(0x62B8B43F)),
    (b"", _signed(0x106E08D9)),
]


def _java_murmur2(data: bytes) -> int:
    """`Utils.murmur2` transliterated statement by statement, with Java's 32-bit `int` overflow
    made explicit: slow, obviously right, and independent of the block-wise implementation."""

    def to_int(x: int) -> int:
        x &= 0xFFFFFFFF
        return x - 2**32 if x >= 2**31 else x

    def ushr(x: int, n: int) -> int:  # Java's >>>
        return (x & 0xFFFFFFFF) >> n

    length = len(data)
    seed = to_int(0x9747B28C)
    m = 0x5BD1E995
    r = 24
    h = to_int(seed ^ length)
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (
            (data[i4 + 0] & 0xFF)
            + ((data[i4 + 1] & 0xFF) << 8)
            + ((data[i4 + 2] & 0xFF) << 16)
            + ((data[i4 + 3] & 0xFF) << 24)
        )
        k = to_int(k * m)
        k = to_int(k ^ ushr(k, r))
        k = to_int(k * m)
        h = to_int(h * m)
        h = to_int(h ^ k)
    rest = length % 4
    tail = length & ~3
    if rest == 3:  # case 3: ... fall through
        h = to_int(h ^ ((data[tail + 2] & 0xFF) << 16))
    if rest >= 2:  # case 2: ... fall through
        h = to_int(h ^ ((data[tail + 1] & 0xFF) << 8))
    if rest >= 1:  # case 1:
        h = to_int(h ^ (data[tail] & 0xFF))
        h = to_int(h * m)
    h = to_int(h ^ ushr(h, 13))
    h = to_int(h * m)
    h = to_int(h ^ ushr(h, 15))
    return h


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST + LIBRDKAFKA_UNITTEST)
def test_murmur2_matches_the_vectors_kafka_and_librdkafka_test_against(
    key: bytes, expected: int
) -> None:
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST + LIBRDKAFKA_UNITTEST)
def test_the_oracle_matches_the_vectors_too(key: bytes, expected: int) -> None:
    assert _java_murmur2(key) == expected


@given(st.binary(max_size=200))
def test_murmur2_agrees_with_the_java_transliteration(key: bytes) -> None:
    assert murmur2(key) == _java_murmur2(key)


@given(st.binary(min_size=1, max_size=64).filter(lambda b: any(byte >= 0x80 for byte in b)))
def test_bytes_above_0x7f_are_unsigned_like_javas_and_0xff(key: bytes) -> None:
    # Java's bytes are signed; `& 0xff` makes them unsigned. A port that sign-extends breaks
    # exactly on these keys (UTF-8 beyond ASCII, binary ids).
    assert murmur2(key) == _java_murmur2(key)


@given(st.binary(max_size=200))
def test_murmur2_is_a_signed_32_bit_int(key: bytes) -> None:
    assert INT32_MIN <= murmur2(key) <= INT32_MAX


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=10_000))
def test_partition_for_is_in_range(key: bytes, partitions: int) -> None:
    assert 0 <= partition_for(key, partitions) < partitions


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=10_000))
def test_partition_for_is_deterministic(key: bytes, partitions: int) -> None:
    copy = bytes(bytearray(key))  # equal bytes, a different object
    assert murmur2(key) == murmur2(copy)
    assert partition_for(key, partitions) == partition_for(copy, partitions)


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=10_000))
def test_partition_for_is_to_positive_murmur2_mod_partitions(key: bytes, partitions: int) -> None:
    assert partition_for(key, partitions) == (murmur2(key) & 0x7FFFFFFF) % partitions


def test_partition_for_clears_the_sign_bit_rather_than_taking_abs() -> None:
    # murmur2(b"21") is -973932308: toPositive gives 1173551340, abs would give 973932308.
    assert partition_for(b"21", 1000) == 340
    assert abs(murmur2(b"21")) % 1000 == 308


def test_partition_for_the_kafka_vectors() -> None:
    # toPositive of the UtilsTest hashes, modulo a few partition counts.
    assert [partition_for(key, 7) for key, _ in KAFKA_UTILS_TEST] == [
        (hash_ & 0x7FFFFFFF) % 7 for _, hash_ in KAFKA_UTILS_TEST
    ]
    assert partition_for(b"foobar", 50) == 16
    assert partition_for(b"", 7) == 275646681 % 7
    assert all(partition_for(key, 1) == 0 for key, _ in KAFKA_UTILS_TEST)


@pytest.mark.parametrize("partitions", [0, -1, -7])
def test_partition_for_rejects_fewer_than_one_partition(partitions: int) -> None:
    with pytest.raises(ValueError, match=rf"partitions must be at least 1, got {partitions}"):
        partition_for(b"key", partitions)
