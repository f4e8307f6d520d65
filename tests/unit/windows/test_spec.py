"""The arithmetic of windows: which windows a timestamp is in, and what a window spec refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.errors import TopologyError
from processor.serdes import IntSerde, JsonSerde, StringSerde
from processor.windows import (
    HoppingWindows,
    SessionWindows,
    SlidingWindows,
    TumblingWindows,
    Windowed,
    WindowedSerde,
)
from processor.windows.spec import is_closed


@given(
    size=st.integers(1, 500),
    advance_fraction=st.integers(1, 500),
    timestamp=st.integers(0, 10_000),
)
def test_hopping_windows_of_a_timestamp_are_exactly_those_containing_it(
    size: int, advance_fraction: int, timestamp: int
) -> None:
    advance = max(1, size * advance_fraction // 500)
    windows = HoppingWindows(size_ms=size, advance_ms=advance)
    expected = [s for s in range(0, timestamp + 1, advance) if s <= timestamp < s + size]
    assert windows.starts_of(timestamp) == expected


@given(size=st.integers(1, 10_000), timestamp=st.integers(0, 10**12))
def test_a_tumbling_window_holds_each_timestamp_once(size: int, timestamp: int) -> None:
    [start] = TumblingWindows(size_ms=size).starts_of(timestamp)
    assert start % size == 0 and start <= timestamp < start + size
    assert TumblingWindows(size_ms=size).starts_of(timestamp) == HoppingWindows(
        size_ms=size, advance_ms=size
    ).starts_of(timestamp)


def test_a_window_is_closed_once_stream_time_passes_its_last_millisecond_plus_grace() -> None:
    assert not is_closed(last_ms=59_999, grace_ms=1_000, stream_time=60_999)
    assert is_closed(last_ms=59_999, grace_ms=1_000, stream_time=61_000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TumblingWindows(size_ms=0), "size_ms must be > 0"),
        (lambda: TumblingWindows(size_ms=10, grace_ms=-1), "grace_ms must be >= 0"),
        (lambda: HoppingWindows(size_ms=10, advance_ms=20), "must not exceed size_ms"),
        (lambda: SlidingWindows(max_difference_ms=0), "max_difference_ms must be > 0"),
        (lambda: SessionWindows(inactivity_gap_ms=1.5), "must be an int of milliseconds"),
    ],
)
def test_a_window_spec_refuses_what_cannot_be_a_window(make: object, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        make()  # type: ignore[operator]


@given(
    key=st.text(),
    start=st.integers(0, 2**62),
    length=st.integers(0, 2**40),
)
def test_windowed_keys_round_trip_and_partition_by_their_inner_key(
    key: str, start: int, length: int
) -> None:
    serde = WindowedSerde(StringSerde())
    data = serde.serialize(Windowed(key, start, start + length))
    assert data is not None
    assert serde.deserialize(data) == Windowed(key, start, start + length)
    assert WindowedSerde.partition_key(data) == key.encode()


def test_a_windowed_serde_refuses_a_plain_key_and_short_bytes() -> None:
    serde = WindowedSerde(IntSerde())
    with pytest.raises(TypeError, match="expected a Windowed key"):
        serde.serialize(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="16 bytes of window bounds"):
        serde.deserialize(b"short")
    assert serde.serialize(None) is None and serde.deserialize(None) is None
    assert WindowedSerde(JsonSerde()).name == "windowed(json)"
