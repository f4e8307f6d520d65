"""Serdes: round-trip properties, null pass-through and wire layouts other clients rely on."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.serdes import BytesSerde, IntSerde, JsonSerde, Serde, StringSerde

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
# a top-level None is a tombstone, never JSON text (see test_none_passes_through_both_ways)
json_documents = json_values.filter(lambda v: v is not None)

ALL_SERDES: list[Serde[Any]] = [BytesSerde(), StringSerde(), IntSerde(), JsonSerde()]


# --- round trips ----------------------------------------------------------------------------


@given(st.binary())
def test_bytes_round_trip_unchanged(data: bytes) -> None:
    serde = BytesSerde()
    assert serde.serialize(data) == data
    assert serde.deserialize(serde.serialize(data)) == data


@given(st.binary())
def test_bytes_accepts_bytearray_and_memoryview(data: bytes) -> None:
    serde = BytesSerde()
    assert serde.serialize(bytearray(data)) == data
    assert serde.serialize(memoryview(data)) == data


@pytest.mark.parametrize("value", [5, 0, [1, 2], "text"])
def test_bytes_refuses_values_that_are_not_bytes(value: Any) -> None:
    # bytes(5) is five zero bytes: a silently wrong record, never what a user meant.
    with pytest.raises(TypeError):
        BytesSerde().serialize(value)


@given(st.text())
def test_string_round_trip(text: str) -> None:
    serde = StringSerde()
    data = serde.serialize(text)
    assert data == text.encode("utf-8")
    assert serde.deserialize(data) == text


def test_string_rejects_invalid_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        StringSerde().deserialize(b"\xff\xfe")


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_int_round_trip_over_the_64_bit_range(number: int) -> None:
    serde = IntSerde()
    data = serde.serialize(number)
    assert data is not None and len(data) == 8
    assert serde.deserialize(data) == number


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_int_layout_is_java_long_big_endian_twos_complement(number: int) -> None:
    assert IntSerde().serialize(number) == number.to_bytes(8, "big", signed=True)


@given(
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
    st.integers(min_value=INT64_MIN, max_value=INT64_MAX),
)
def test_int_bytes_of_non_negative_numbers_sort_like_the_numbers(a: int, b: int) -> None:
    a, b = abs(a) // 2, abs(b) // 2
    serde = IntSerde()
    assert (serde.serialize(a) < serde.serialize(b)) == (a < b)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("number", "data"),
    [
        (0, b"\x00" * 8),
        (1, b"\x00" * 7 + b"\x01"),
        (256, b"\x00" * 6 + b"\x01\x00"),
        (-1, b"\xff" * 8),
        (INT64_MAX, b"\x7f" + b"\xff" * 7),
        (INT64_MIN, b"\x80" + b"\x00" * 7),
    ],
)
def test_int_matches_java_long_serializer(number: int, data: bytes) -> None:
    serde = IntSerde()
    assert serde.serialize(number) == data
    assert serde.deserialize(data) == number


@given(st.integers(min_value=INT64_MAX + 1) | st.integers(max_value=INT64_MIN - 1))
def test_int_out_of_the_64_bit_range_raises(number: int) -> None:
    with pytest.raises((struct.error, OverflowError, ValueError)):
        IntSerde().serialize(number)


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x00" * 4, b"\x00" * 9])
def test_int_rejects_data_that_is_not_8_bytes(data: bytes) -> None:
    with pytest.raises(ValueError, match=str(len(data))):
        IntSerde().deserialize(data)


@given(json_documents)
def test_json_round_trip(value: Any) -> None:
    serde = JsonSerde()
    data = serde.serialize(value)
    assert isinstance(data, bytes)
    assert serde.deserialize(data) == value


@given(json_documents)
def test_json_is_utf8_json_any_reader_parses(value: Any) -> None:
    data = JsonSerde().serialize(value)
    assert data is not None
    assert json.loads(data.decode("utf-8")) == value


def test_json_is_compact_and_keeps_non_ascii_text() -> None:
    assert JsonSerde().serialize({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()


def test_json_turns_tuples_into_lists() -> None:
    serde = JsonSerde()
    assert serde.deserialize(serde.serialize((1, "a"))) == [1, "a"]


def test_json_keeps_negative_zero_and_float_precision() -> None:
    serde = JsonSerde()
    value = serde.deserialize(serde.serialize([-0.0, 0.1, 1e300]))
    assert value == [0.0, 0.1, 1e300]
    assert math.copysign(1.0, value[0]) == -1.0


def test_json_rejects_invalid_text() -> None:
    with pytest.raises(ValueError):
        JsonSerde().deserialize(b"{not json")


def test_json_refuses_values_it_cannot_encode() -> None:
    with pytest.raises(TypeError):
        JsonSerde().serialize({"when": object()})


# --- null pass-through ----------------------------------------------------------------------


@pytest.mark.parametrize("serde", ALL_SERDES, ids=lambda s: s.name)
def test_none_passes_through_both_ways(serde: Serde[Any]) -> None:
    assert serde.serialize(None) is None
    assert serde.deserialize(None) is None


def test_empty_payload_is_an_empty_value_not_a_null() -> None:
    assert BytesSerde().deserialize(b"") == b""
    assert StringSerde().deserialize(b"") == ""
    assert BytesSerde().serialize(b"") == b""
    assert StringSerde().serialize("") == b""


# --- names ----------------------------------------------------------------------------------


def test_serde_names_are_distinct_and_used_in_repr() -> None:
    names = [s.name for s in ALL_SERDES]
    assert names == ["bytes", "string", "int", "json"]
    assert repr(IntSerde()) == "IntSerde()"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_json_refuses_values_other_readers_cannot_parse(value: object) -> None:
    with pytest.raises(ValueError):
        JsonSerde().serialize(value)
