"""Windows as the query API reads them from raw store bytes (the layout documented in
`processor.state.window_store`, written here by hand): decoding, which windows a time range
selects in window and session stores, and pages over several tasks that skip and repeat
nothing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.query.windows import (
    MAX_TIME_MS,
    LayoutError,
    Part,
    TimeRange,
    Window,
    combine,
    decode,
    read_part,
)
from processor.serdes import IntSerde, StringSerde
from processor.state.memory import InMemoryBackend

STORE = "w"


def stored(key: bytes, start: int, end: int) -> bytes:
    return (
        b"W" + len(key).to_bytes(4, "big") + key + start.to_bytes(8, "big") + end.to_bytes(8, "big")
    )


def put(backend: InMemoryBackend, key: str, start: int, end: int, ts: int, count: int) -> None:
    value = ts.to_bytes(8, "big") + count.to_bytes(8, "big", signed=True)  # IntSerde's bytes
    backend.write({STORE: [(stored(key.encode(), start, end), value)]}, {})


def with_other_entries() -> InMemoryBackend:
    """A backend holding, besides windows, the index, meta and sliding-record entries a window
    store keeps (all of which the query API skips)."""
    backend = InMemoryBackend([STORE])
    backend.write(
        {
            STORE: [
                (b"I" + (9).to_bytes(8, "big") + stored(b"a", 0, 10), b""),
                (b"Memitted", (10).to_bytes(8, "big")),
                (b"R" + (1).to_bytes(4, "big") + b"a" + (3).to_bytes(8, "big"), b"\0\0\0\1x"),
            ]
        },
        {},
    )
    return backend


def windows(part: Part) -> list[tuple[str, int, int]]:
    return [
        (decode(k, v).key.decode(), decode(k, v).start_ms, decode(k, v).end_ms)
        for k, v in part.entries
    ]


# -- decoding -----------------------------------------------------------------------------------


def test_a_window_entry_decodes_to_its_key_bounds_timestamp_and_aggregate() -> None:
    window = decode(stored(b"alice", 60_000, 120_000), (119_999).to_bytes(8, "big") + b"agg")
    assert window == Window(b"alice", 60_000, 120_000, 119_999, b"agg")
    shown = Window(b"alice", 0, 10, 9, IntSerde().serialize(3) or b"").render(
        StringSerde(), IntSerde()
    )
    assert shown == {"key": "alice", "start_ms": 0, "end_ms": 10, "value": "3", "timestamp_ms": 9}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"Memitted", b"\0" * 8),
        (stored(b"a", 0, 10)[:-1], b"\0" * 8),
        (stored(b"a", 0, 10) + b"x", b"\0" * 8),
        (stored(b"a", 0, 10), b"\0" * 7),
    ],
)
def test_anything_else_is_a_layout_error(key: bytes, value: bytes) -> None:
    with pytest.raises(LayoutError, match="is not a window entry"):
        decode(key, value)


# -- time ranges ----------------------------------------------------------------------------------


def test_a_window_store_selects_windows_by_start_both_bounds_inclusive() -> None:
    selected = TimeRange(100, 200, "window")
    assert [s for s in (99, 100, 150, 200, 201) if selected.selects(s, s + 50)] == [100, 150, 200]
    assert not selected.selects(50, 150), "overlapping the range is not enough: the start counts"


def test_a_session_store_selects_the_sessions_overlapping_the_range() -> None:
    selected = TimeRange(100, 200, "session")
    assert selected.selects(50, 100) and selected.selects(200, 300) and selected.selects(0, 1000)
    assert not selected.selects(50, 99) and not selected.selects(201, 300)


@pytest.mark.parametrize(
    ("start", "end", "kind"),
    [(-1, 5, "window"), (6, 5, "window"), (0, MAX_TIME_MS + 1, "session"), (0, 5, "key_value")],
)
def test_a_range_that_is_not_one_is_refused(start: int, end: int, kind: str) -> None:
    with pytest.raises(ValueError):
        TimeRange(start, end, kind)


def test_one_keys_windows_are_one_scan_that_no_other_key_shares() -> None:
    backend = with_other_entries()
    for key in ("a", "ab", "b", ""):
        for start in (0, 10, 20, 30):
            put(backend, key, start, start + 10, start + 9, 1)
    selected = TimeRange(10, 20, "window")
    low, high = selected.bounds(b"a")
    part = read_part(backend, STORE, low, high, selected, 100)
    assert windows(part) == [("a", 10, 20), ("a", 20, 30)]
    assert part.horizon is None
    everything = TimeRange(0, MAX_TIME_MS, "window")
    assert len(read_part(backend, STORE, *everything.bounds(b""), everything, 100).entries) == 4
    assert len(read_part(backend, STORE, *everything.bounds(None), everything, 100).entries) == 16


def test_every_keys_windows_come_in_stored_order_by_key_length_first() -> None:
    backend = with_other_entries()
    for key in ("b", "ab", "a"):
        put(backend, key, 10, 20, 19, 1)
    selected = TimeRange(0, 100, "window")
    part = read_part(backend, STORE, *selected.bounds(None), selected, 100)
    assert [w[0] for w in windows(part)] == ["a", "b", "ab"]


def test_a_keys_sessions_overlapping_the_range_started_before_it_too() -> None:
    backend = with_other_entries()
    for start, end in ((0, 5), (10, 40), (50, 50), (60, 90), (100, 120)):
        put(backend, "s", start, end, end, 1)
    selected = TimeRange(30, 60, "session")
    part = read_part(backend, STORE, *selected.bounds(b"s"), selected, 100)
    assert windows(part) == [("s", 10, 40), ("s", 50, 50), ("s", 60, 90)]


def test_the_largest_times_are_in_range() -> None:
    backend = InMemoryBackend([STORE])
    put(backend, "k", MAX_TIME_MS, MAX_TIME_MS, MAX_TIME_MS, 1)
    selected = TimeRange(MAX_TIME_MS, MAX_TIME_MS, "window")
    assert windows(read_part(backend, STORE, *selected.bounds(b"k"), selected, 10)) == [
        ("k", MAX_TIME_MS, MAX_TIME_MS)
    ]


# -- parts and pages -----------------------------------------------------------------------------


def test_a_part_stops_at_its_limit_or_after_its_scan_with_a_horizon() -> None:
    backend = InMemoryBackend([STORE])
    for start in range(0, 100, 10):
        put(backend, "k", start, start + 10, start, 1)
    selected = TimeRange(50, 100, "window")
    everything = TimeRange(0, 100, "window")
    full = read_part(backend, STORE, *everything.bounds(None), selected, 2)
    assert windows(full) == [("k", 50, 60), ("k", 60, 70)]
    assert full.horizon == stored(b"k", 60, 70)
    scanned = read_part(backend, STORE, *everything.bounds(None), selected, 100, max_scanned=3)
    assert scanned == Part([], stored(b"k", 20, 30)), "3 windows looked at, none selected"


def test_combining_parts_ends_the_page_at_the_lowest_horizon() -> None:
    a = Part([(b"W1", b""), (b"W5", b"")], b"W5")
    b = Part([(b"W2", b""), (b"W7", b"")], None)
    c = Part([(b"W3", b"")], b"W4")
    assert combine([a, b, c], 10) == Part([(b"W1", b""), (b"W2", b""), (b"W3", b"")], b"W4")
    assert combine([a, b, c], 2) == Part([(b"W1", b""), (b"W2", b"")], b"W2")
    assert combine([b], 10) == Part(b.entries, None)
    assert combine([], 10) == Part([], None)


Layout = list[tuple[int, str, int, int]]  # (task, key, start, length)


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    keys = draw(st.lists(st.text("ab", max_size=3), min_size=1, max_size=5, unique=True))
    return draw(
        st.lists(
            st.tuples(
                st.integers(0, 2),
                st.sampled_from(keys),
                st.integers(0, 60),
                st.integers(0, 20),
            ),
            max_size=40,
            unique_by=lambda w: (w[1], w[2], w[3]),
        )
    )


@settings(max_examples=200, deadline=None)
@given(
    layout=layouts(),
    kind=st.sampled_from(["window", "session"]),
    bounds=st.tuples(st.integers(0, 80), st.integers(0, 80)).map(sorted),
    limit=st.integers(1, 7),
    max_scanned=st.integers(1, 7),
)
def test_paging_over_several_tasks_returns_every_selected_window_once_in_order(
    layout: Layout, kind: str, bounds: list[int], limit: int, max_scanned: int
) -> None:
    backends = [with_other_entries() for _ in range(3)]
    for task, key, start, length in layout:
        put(backends[task], key, start, start + length, start, 1)
    selected = TimeRange(bounds[0], bounds[1], kind)
    expected = sorted(
        stored(key.encode(), start, start + length)
        for _, key, start, length in layout
        if selected.selects(start, start + length)
    )
    got: list[bytes] = []
    low, high = selected.bounds(None)
    for _ in range(len(layout) + 10):
        parts = [
            read_part(b, STORE, low, high, selected, limit, max_scanned=max_scanned)
            for b in backends
        ]
        page = combine(parts, limit)
        assert len(page.entries) <= limit
        got.extend(k for k, _ in page.entries)
        if page.horizon is None:
            break
        low = max(low, page.horizon + b"\0")
    else:
        pytest.fail("paging did not end")
    assert got == expected


def test_a_cursor_past_the_range_reads_nothing() -> None:
    backend = InMemoryBackend([STORE])
    put(backend, "k", 10, 20, 19, 1)
    selected = TimeRange(0, 100, "window")
    _, high = selected.bounds(b"k")
    assert read_part(backend, STORE, high + b"\0", high, selected, 10) == Part([], None)
    assert read_part(backend, STORE, b"Z", b"\xff", selected, 10) == Part([], None)
