"""The repartition record of a table re-grouping: a flag and the serialized value(s)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.serdes import JsonSerde, StringSerde
from processor.topology.change import (
    Change,
    ChangeFormatError,
    ChangeSerde,
    decode_change,
    encode_change,
)

values = st.one_of(st.none(), st.binary(max_size=64))


@given(values, values)
def test_bytes_round_trip(new: bytes | None, old: bytes | None) -> None:
    if new is None and old is None:
        with pytest.raises(ValueError, match="old or a new value"):
            encode_change(new, old)
        return
    assert decode_change(encode_change(new, old)) == (new, old)


def test_the_layout_is_a_flag_then_the_old_length_then_old_and_new() -> None:
    assert encode_change(b"n", None) == b"\x02n"
    assert encode_change(None, b"o") == b"\x01o"
    assert encode_change(b"new", b"od") == b"\x03\x00\x00\x00\x02odnew"
    # empty values are values, not absent ones
    assert decode_change(b"\x03\x00\x00\x00\x00") == (b"", b"")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x04x", "unknown change flags 0x04"),
        (b"\x03\x00\x00", "too short"),
        (b"\x03\x00\x00\x00\x09ab", "beyond"),
    ],
)
def test_bytes_that_are_not_a_change_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ChangeFormatError, match=message):
        decode_change(data)


@given(
    st.one_of(st.none(), st.text(max_size=8)),
    st.one_of(st.none(), st.text(max_size=8)),
)
def test_serde_round_trip(new: str | None, old: str | None) -> None:
    serde = ChangeSerde(StringSerde())
    if new is None and old is None:
        assert serde.serialize(None) is None
        return
    assert serde.deserialize(serde.serialize(Change(new, old))) == Change(new, old)


def test_serde_names_its_values() -> None:
    assert ChangeSerde(JsonSerde()).name == "change<json>"
