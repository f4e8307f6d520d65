"""The batch checks of global tables' records are exact: they accept a batch only when every
value decodes on its own with its serde."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.serdes import BytesSerde, IntSerde, JsonSerde, StringSerde
from processor.state.global_decode import batch_check

FRAGMENTS = [b"[1", b"]", b"2\n3", b'"a', b'b"', b"{", b"}", b" 1", b"1 ", b"", b"\xc3", b"\xa9"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
).map(lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode())
values = st.lists(json_values | st.sampled_from(FRAGMENTS) | st.binary(max_size=4), max_size=8)


def _each_decodes(serde: Any, batch: list[bytes]) -> bool:
    try:
        for value in batch:
            serde.deserialize(value)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("serde", [JsonSerde(), StringSerde(), IntSerde(), BytesSerde()])
@given(batch=values)
def test_a_batch_passes_only_when_every_value_decodes(serde: Any, batch: list[bytes]) -> None:
    check = batch_check(serde)
    assert check is not None
    if check(batch):
        assert _each_decodes(serde, batch)


@given(batch=st.lists(json_values, max_size=8))
def test_compact_json_passes_when_it_is_ascii(batch: list[bytes]) -> None:
    check = batch_check(JsonSerde())
    assert check is not None
    assert check(batch) is all(v.isascii() for v in batch)


def test_values_that_are_json_only_together_are_refused() -> None:
    check = batch_check(JsonSerde())
    assert check is not None
    assert not check([b"[1", b"]", b"2\n3"])  # joined: [1\n]\n2\n3, three documents
    assert not check([b'{"a":1}', b"{"])
    assert check([b'{"a":1}', b"[2,3]", b'"x"'])


def test_a_serde_without_a_batch_check_is_decoded_value_by_value() -> None:
    class Upper:
        name = "upper"

        def serialize(self, value: str | None) -> bytes | None:
            return None if value is None else value.upper().encode()

        def deserialize(self, data: bytes | None) -> str | None:
            return None if data is None else data.decode()

    assert batch_check(Upper()) is None
