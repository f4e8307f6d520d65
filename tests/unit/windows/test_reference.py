"""The brute-force reference on small inputs checked by hand, so that it can be trusted as the
expected side of the property tests (test_window_properties.py).

Records are written `R(key, value, ts)`; outputs `E(W(key, start, end), aggregate, ts)`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.windows.reference import (
    APPEND,
    SUM,
    Hopping,
    Output,
    Record,
    Session,
    Sliding,
    Spec,
    Tumbling,
    Window,
    run,
)

R, W, E = Record, Window, Output

# --- tumbling ---------------------------------------------------------------------------------

TUMBLING_INPUT = [R("a", 1, 1), R("a", 1, 5), R("b", 1, 12), R("a", 1, 3), R("a", 1, 15)]


def test_tumbling_update_emits_every_change_and_drops_the_late_record() -> None:
    result = run(Tumbling(size_ms=10), TUMBLING_INPUT, emit="update")
    assert result.outputs == [
        [E(W("a", 0, 10), 1, 1)],
        [E(W("a", 0, 10), 2, 5)],
        [E(W("b", 10, 20), 1, 12)],
        [],  # ts 3 at stream time 12: [0, 10) closed once stream time passed 9
        [E(W("a", 10, 20), 1, 15)],
    ]
    assert result.late == [False, False, False, True, False]
    assert result.late_count == 1
    assert result.stream_time == 15


def test_tumbling_final_emits_each_window_once_when_stream_time_passes_it() -> None:
    result = run(Tumbling(size_ms=10), TUMBLING_INPUT, emit="final")
    assert result.outputs == [[], [], [E(W("a", 0, 10), 2, 5)], [], []]
    # [10, 20) is not closed at stream time 15; retention 10 keeps both windows in the store
    assert result.store == {
        W("a", 0, 10): (2, 5),
        W("b", 10, 20): (1, 12),
        W("a", 10, 20): (1, 15),
    }


def test_grace_keeps_a_window_open_after_its_end() -> None:
    records = [R("a", 1, 1), R("b", 1, 12), R("a", 1, 3), R("b", 1, 15), R("a", 1, 4)]
    update = run(Tumbling(size_ms=10, grace_ms=5), records, emit="update")
    assert update.outputs == [
        [E(W("a", 0, 10), 1, 1)],
        [E(W("b", 10, 20), 1, 12)],
        [E(W("a", 0, 10), 2, 3)],  # 12 <= 9 + 5: still open
        [E(W("b", 10, 20), 2, 15)],
        [],  # 15 > 9 + 5: closed
    ]
    assert update.late == [False, False, False, False, True]
    final = run(Tumbling(size_ms=10, grace_ms=5), records, emit="final")
    assert final.outputs == [[], [], [], [E(W("a", 0, 10), 2, 3)], []]


def test_the_result_timestamp_is_the_largest_record_timestamp_not_the_latest() -> None:
    result = run(Tumbling(size_ms=10), [R("a", 1, 8), R("a", 1, 2)], emit="update")
    assert result.outputs == [[E(W("a", 0, 10), 1, 8)], [E(W("a", 0, 10), 2, 8)]]


def test_a_null_value_moves_stream_time_but_is_not_aggregated() -> None:
    records = [R("a", 1, 1), R("b", None, 10), R("a", 1, 2)]
    update = run(Tumbling(size_ms=10), records, emit="update")
    assert update.outputs == [[E(W("a", 0, 10), 1, 1)], [], []]
    assert update.late == [False, False, True]
    final = run(Tumbling(size_ms=10), records, emit="final")
    assert final.outputs == [[], [E(W("a", 0, 10), 1, 1)], []]


def test_duplicate_timestamps_and_sum() -> None:
    records = [R("a", 3, 4), R("a", -1, 4), R("a", 0, 4)]
    result = run(Tumbling(size_ms=5), records, emit="update", aggregation=SUM)
    # a value of 0 still changes the window (it received a record), so it is emitted
    assert result.outputs == [
        [E(W("a", 0, 5), 3, 4)],
        [E(W("a", 0, 5), 2, 4)],
        [E(W("a", 0, 5), 2, 4)],
    ]


def test_append_keeps_arrival_order() -> None:
    records = [R("a", 1, 7), R("a", 2, 3), R("a", 3, 5)]
    result = run(Tumbling(size_ms=10), records, emit="final", aggregation=APPEND)
    assert result.outputs == [[], [], []]
    assert result.store == {W("a", 0, 10): ([1, 2, 3], 7)}


def test_order_dependent_aggregations_are_refused_for_sliding_and_sessions() -> None:
    with pytest.raises(ValueError, match="tumbling/hopping"):
        run(Session(gap_ms=5), [], aggregation=APPEND)
    with pytest.raises(ValueError, match="tumbling/hopping"):
        run(Sliding(max_difference_ms=5), [], aggregation=APPEND)


def test_final_order_is_last_ms_then_key_bytes_then_start() -> None:
    records = [R("b", 1, 1), R("a", 1, 8), R("a", 1, 1), R("c", 1, 100)]
    result = run(Hopping(size_ms=10, advance_ms=5), records, emit="final")
    # windows [0, 10) and [5, 15) (a only: b@1 is only in [0, 10))
    assert result.outputs[-1] == [
        E(W("a", 0, 10), 2, 8),
        E(W("b", 0, 10), 1, 1),
        E(W("a", 5, 15), 1, 8),
    ]


def test_expired_windows_leave_the_store() -> None:
    records = [R("a", 1, 1), R("a", 1, 15), R("a", 1, 20)]
    # [0, 10): last_ms 9, retention 10 + 0: expired once stream time > 19
    assert set(run(Tumbling(size_ms=10), records[:2]).store) == {W("a", 0, 10), W("a", 10, 20)}
    assert set(run(Tumbling(size_ms=10), records).store) == {W("a", 10, 20), W("a", 20, 30)}
    assert set(run(Tumbling(size_ms=10), records, retention_ms=11).store) == {
        W("a", 0, 10),
        W("a", 10, 20),
        W("a", 20, 30),
    }


# --- hopping ----------------------------------------------------------------------------------


def test_hopping_record_partly_late_joins_its_open_windows_only() -> None:
    records = [R("a", 1, 12), R("a", 1, 7), R("a", 1, 3), R("b", 1, 30)]
    spec = Hopping(size_ms=10, advance_ms=5)
    update = run(spec, records, emit="update")
    assert update.outputs == [
        [E(W("a", 5, 15), 1, 12), E(W("a", 10, 20), 1, 12)],
        # ts 7 is in [0, 10) (closed: 12 > 9) and [5, 15) (open): joins [5, 15), not late
        [E(W("a", 5, 15), 2, 12)],
        [],  # ts 3 is only in [0, 10): late
        [E(W("b", 25, 35), 1, 30), E(W("b", 30, 40), 1, 30)],
    ]
    assert update.late == [False, False, True, False]
    final = run(spec, records, emit="final")
    assert final.outputs == [[], [], [], [E(W("a", 5, 15), 2, 12), E(W("a", 10, 20), 1, 12)]]


def test_hopping_windows_of_a_timestamp() -> None:
    records = [R("a", 1, 7)]
    result = run(Hopping(size_ms=10, advance_ms=3), records)
    assert [o.window for o in result.outputs[0]] == [W("a", 0, 10), W("a", 3, 13), W("a", 6, 16)]


# --- sliding ----------------------------------------------------------------------------------


SLIDING_INPUT = [R("a", 1, 5), R("a", 1, 12), R("a", 1, 8), R("a", 1, 1), R("b", 1, 30)]


def test_sliding_update() -> None:
    result = run(Sliding(max_difference_ms=10), SLIDING_INPUT, emit="update")
    assert result.outputs == [
        # ts 5 < 10: its left window is [0, 10]
        [E(W("a", 0, 10), 1, 5)],
        # left window of 12; right window of 5 ([6, 16], holds 12); [0, 10] is closed
        [E(W("a", 2, 12), 2, 12), E(W("a", 6, 16), 1, 12)],
        # 8 joins the open windows holding it; its left window [0, 10] is closed; its right
        # window [9, 19] holds 12
        [E(W("a", 2, 12), 3, 12), E(W("a", 6, 16), 2, 12), E(W("a", 9, 19), 1, 12)],
        [],  # ts 1: [1, 11] closed at stream time 12
        [E(W("b", 20, 30), 1, 30)],
    ]
    assert result.late == [False, False, False, True, False]


def test_sliding_final() -> None:
    result = run(Sliding(max_difference_ms=10), SLIDING_INPUT, emit="final")
    assert result.outputs == [
        [],
        [E(W("a", 0, 10), 1, 5)],
        [],
        [],
        [E(W("a", 2, 12), 3, 12), E(W("a", 6, 16), 2, 12), E(W("a", 9, 19), 1, 12)],
    ]


def test_sliding_record_accepted_through_the_right_window_it_fills() -> None:
    spec = Sliding(max_difference_ms=5)
    records = [R("a", 1, 10), R("b", 1, 14), R("a", 1, 11), R("a", 1, 12), R("a", 1, 8)]
    result = run(spec, records, emit="update")
    assert result.outputs == [
        [E(W("a", 5, 10), 1, 10)],
        [E(W("b", 9, 14), 1, 14)],
        # 11's left window [6, 11] is closed (14 > 11) and is never created; the right window
        # of 10, [11, 16], holds it and is open (14 <= 16)
        [E(W("a", 11, 16), 1, 11)],
        [E(W("a", 11, 16), 2, 12), E(W("a", 12, 17), 1, 12)],
        # 8: [3, 8] closed, and no window that exists holds it ([5, 10] is closed)
        [],
    ]
    assert result.late == [False, False, False, False, True]


def test_sliding_record_in_no_window_yet_is_not_late() -> None:
    # b@20 moves stream time to 20. a@9: its left window [4, 9] is closed (20 > 9 + 10) and it
    # has no right window, so it is in no window; but [9, 14] could still hold it (20 <= 14 +
    # 10): not late. a@5 then defines the right window [6, 11], which holds a@9 and is open; its
    # own left window [0, 5] is closed and never exists.
    spec = Sliding(max_difference_ms=5, grace_ms=10)
    records = [R("b", 1, 20), R("a", 1, 9), R("a", 1, 5), R("a", 1, 3)]
    result = run(spec, records, emit="update")
    assert result.outputs == [[E(W("b", 15, 20), 1, 20)], [], [E(W("a", 6, 11), 1, 9)], []]
    assert result.late == [False, False, False, True]  # a@3: [3, 8] closed (20 > 18)


# --- sessions ---------------------------------------------------------------------------------


SESSION_INPUT = [
    R("a", 1, 0),
    R("a", 1, 10),
    R("a", 1, 5),  # bridges [0, 0] and [10, 10]
    R("b", 1, 30),
    R("a", 1, 12),  # would extend [0, 10] to [0, 12]: 12 + 0 < 30, late
    R("a", 1, 28),  # a new session [28, 28]: 28 < 30, late
    R("a", 1, 30),
]


def test_session_merge_retracts_the_merged_sessions_with_tombstones() -> None:
    result = run(Session(gap_ms=5), SESSION_INPUT, emit="update")
    assert result.outputs == [
        [E(W("a", 0, 0), 1, 0)],
        [E(W("a", 10, 10), 1, 10)],
        [E(W("a", 0, 0), None, 0), E(W("a", 10, 10), None, 10), E(W("a", 0, 10), 3, 10)],
        [E(W("b", 30, 30), 1, 30)],
        [],
        [],
        [E(W("a", 30, 30), 1, 30)],
    ]
    assert result.late == [False, False, False, False, True, True, False]


def test_session_record_inside_a_session_updates_it_without_a_tombstone() -> None:
    records = [R("a", 2, 0), R("a", 3, 4), R("a", 4, 2)]
    result = run(Session(gap_ms=5), records, emit="update", aggregation=SUM)
    assert result.outputs == [
        [E(W("a", 0, 0), 2, 0)],
        [E(W("a", 0, 0), None, 0), E(W("a", 0, 4), 5, 4)],
        [E(W("a", 0, 4), 9, 4)],
    ]


def test_session_grace_is_judged_on_the_merged_session() -> None:
    # [0, 10] at stream time 14, grace 3: closed (10 + 3 < 14); a@12 extends it to [0, 12],
    # 12 + 3 >= 14: accepted
    records = [R("a", 1, 0), R("a", 1, 10), R("b", 1, 14), R("a", 1, 12), R("a", 1, 1)]
    result = run(Session(gap_ms=10, grace_ms=3), records, emit="update")
    assert result.outputs[3] == [E(W("a", 0, 10), None, 10), E(W("a", 0, 12), 3, 12)]
    # a@1 lands inside [0, 12]: 12 + 3 >= 14, still open
    assert result.outputs[4] == [E(W("a", 0, 12), 4, 12)]
    assert result.late == [False] * 5


def test_session_final_waits_for_gap_and_grace() -> None:
    result = run(Session(gap_ms=5), SESSION_INPUT, emit="final")
    assert result.outputs == [
        [],
        # [0, 0] is final at stream time 10 > 0 + 5 + 0 ...
        [E(W("a", 0, 0), 1, 0)],
        # ... yet a@5 then merges it into [0, 10] (see the next test)
        [],
        [E(W("a", 0, 10), 3, 10)],
        [],
        [],
        [],
    ]
    # gap + grace retention: [0, 10] expired at stream time 30 > 10 + 5
    assert result.store == {W("b", 30, 30): (1, 30), W("a", 30, 30): (1, 30)}
    # closed for new records (3 > 0 + 0) is not final: a@3 may still extend [0, 0]
    records = [R("a", 1, 0), R("b", 1, 3), R("b", 1, 5), R("b", 1, 6)]
    assert run(Session(gap_ms=5), records, emit="final").outputs == [
        [],
        [],
        [],
        [E(W("a", 0, 0), 1, 0)],
    ]


def test_a_final_session_can_still_be_merged_by_a_bridging_record() -> None:
    # The design says a session is final once stream_time > end + gap + grace, "only then can no
    # record extend them". A record between a final session and a later open session of the
    # same key bridges them: the merged session ends at the open one's end, so it is not late.
    records = [R("a", 1, 0), R("a", 1, 6), R("a", 1, 3)]
    result = run(Session(gap_ms=3), records, emit="final")
    assert result.outputs[1] == [E(W("a", 0, 0), 1, 0)]  # 6 > 0 + 3 + 0
    assert result.late == [False, False, False]
    assert result.store == {W("a", 0, 6): (3, 6)}


# --- properties of the reference itself ---------------------------------------------------------
# Checked against other, independent formulations where nothing is late (a huge grace), and for
# consistency between the emit modes.

NEVER_LATE = 10_000
keys = st.sampled_from(["a", "b"])
inputs = st.lists(st.builds(Record, keys, st.integers(-2, 2), st.integers(0, 30)), max_size=20)
time_specs = st.one_of(
    st.builds(Tumbling, st.integers(1, 8), st.just(NEVER_LATE)),
    st.integers(2, 8).flatmap(
        lambda size: st.builds(Hopping, st.just(size), st.integers(1, size), st.just(NEVER_LATE))
    ),
)
any_specs = st.one_of(
    time_specs,
    st.builds(Sliding, st.integers(1, 8), st.integers(0, 6)),
    st.builds(Session, st.integers(1, 8), st.integers(0, 6)),
)
REFERENCE_SETTINGS = settings(max_examples=200, deadline=None)


def _counts(store: dict[Window, tuple[Any, int]]) -> dict[Window, int]:
    return {w: count for w, (count, _ts) in store.items()}


@REFERENCE_SETTINGS
@given(time_specs, inputs)
def test_without_lateness_a_time_window_counts_the_records_in_it(
    spec: Tumbling | Hopping, records: list[Record]
) -> None:
    advance = spec.advance_ms if isinstance(spec, Hopping) else spec.size_ms
    expected: Counter[Window] = Counter()
    for r in records:
        for start in range(0, 31, advance):
            if start <= r.ts < start + spec.size_ms:
                expected[Window(r.key, start, start + spec.size_ms)] += 1
    result = run(spec, records, retention_ms=NEVER_LATE * 2)
    assert _counts(result.store) == dict(expected)
    assert not any(result.late)


@REFERENCE_SETTINGS
@given(st.integers(1, 8), inputs)
def test_without_lateness_sessions_are_the_connected_records(
    gap: int, records: list[Record]
) -> None:
    # Union-find over every pair of records of a key at most `gap` apart.
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, a in enumerate(records):
        for j, b in enumerate(records):
            if a.key == b.key and abs(a.ts - b.ts) <= gap:
                parent[root(i)] = root(j)
    groups: dict[int, list[Record]] = {}
    for i, r in enumerate(records):
        groups.setdefault(root(i), []).append(r)
    expected = {
        Window(g[0].key, min(r.ts for r in g), max(r.ts for r in g)): len(g)
        for g in groups.values()
    }
    result = run(Session(gap_ms=gap, grace_ms=NEVER_LATE), records, retention_ms=NEVER_LATE * 2)
    assert _counts(result.store) == expected


@REFERENCE_SETTINGS
@given(st.integers(1, 8), inputs)
def test_without_lateness_sliding_windows_are_where_records_are(
    d: int, records: list[Record]
) -> None:
    # Kafka Streams' definition, read literally: each record's left window, and the right window
    # of each record that has a record after it within d + 1.
    starts = {(r.key, max(0, r.ts - d)) for r in records}
    starts |= {
        (r.key, r.ts + 1)
        for r in records
        if any(o.key == r.key and r.ts < o.ts <= r.ts + 1 + d for o in records)
    }
    expected = {
        Window(key, s, s + d): sum(1 for r in records if r.key == key and s <= r.ts <= s + d)
        for key, s in starts
    }
    spec = Sliding(max_difference_ms=d, grace_ms=NEVER_LATE)
    assert _counts(run(spec, records, retention_ms=NEVER_LATE * 2).store) == expected


@REFERENCE_SETTINGS
@given(any_specs, inputs)
def test_update_outputs_replayed_as_a_table_are_the_windows(
    spec: Spec, records: list[Record]
) -> None:
    result = run(spec, records, emit="update", aggregation=SUM, retention_ms=NEVER_LATE)
    table: dict[Window, tuple[Any, int]] = {}
    for out in result.all_outputs():
        if out.value is None:
            del table[out.window]
        else:
            table[out.window] = (out.value, out.timestamp)
    assert table == result.store


@REFERENCE_SETTINGS
@given(any_specs, inputs)
def test_each_final_result_is_the_last_update_of_its_window(
    spec: Spec, records: list[Record]
) -> None:
    update = run(spec, records, emit="update", aggregation=SUM)
    final = run(spec, records, emit="final", aggregation=SUM)
    assert update.late == final.late
    last: dict[Window, Output] = {}
    for i, outputs in enumerate(update.outputs):
        for out in outputs:
            last[out.window] = out
        for out in final.outputs[i]:
            assert last[out.window] == out
    finals = [out.window for out in final.all_outputs()]
    assert len(finals) == len(set(finals)), "a window is emitted final once"
