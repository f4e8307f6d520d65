"""Keys given as text become the stored bytes of the store's key serde, or a clear error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.query.render import KeyFormatError, parse_key, render
from processor.serdes import BytesSerde, IntSerde, JsonSerde, StringSerde


@pytest.mark.parametrize(
    ("serde", "text"),
    [
        (JsonSerde(), "[" * 3000 + "]" * 3000),  # nested past the recursion limit
        (JsonSerde(), "NaN"),
        (JsonSerde(), "{not json"),
        (IntSerde(), "12x"),
        (IntSerde(), str(2**63)),
        (BytesSerde(), "\ud800"),  # a lone surrogate
        (StringSerde(), "\ud800"),
    ],
)
def test_a_key_that_cannot_be_serialized_is_a_key_format_error(serde: object, text: str) -> None:
    with pytest.raises(KeyFormatError):
        parse_key(serde, text)  # type: ignore[arg-type]


@given(st.text(max_size=50))
def test_string_and_json_keys_round_trip(text: str) -> None:
    try:
        data = parse_key(StringSerde(), text)
    except KeyFormatError:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        return
    assert render(StringSerde(), data) == text
    assert render(JsonSerde(), parse_key(JsonSerde(), JsonSerde().serialize(text).decode())) == text  # type: ignore[union-attr]


@given(st.integers(-(2**63), 2**63 - 1))
def test_int_keys_round_trip(number: int) -> None:
    assert render(IntSerde(), parse_key(IntSerde(), str(number))) == str(number)
