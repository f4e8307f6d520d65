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
    Event,
    Hopping,
    Idle,
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


def test_idle_advance_moves_stream_time_with_the_wall_clock() -> None:
    # idle advance 5: at wall 4 nothing moves; at wall 5 stream time is 3 + 5 = 8, closing
    # [0, 5); a@7 at wall 5; at wall 12, 8 + 7 = 15 closes [5, 10); a@9 is then late, but it is
    # input: idleness counts from wall 12 again, so wall 16 moves nothing.
    events: list[Event] = [R("a", 1, 3), Idle(4), Idle(1), R("a", 1, 7), Idle(7)]
    events += [R("a", 1, 9), Idle(4)]
    final = run(Tumbling(size_ms=5), events, emit="final", idle_advance_ms=5)
    assert final.outputs == [[], [], [E(W("a", 0, 5), 1, 3)], [], [E(W("a", 5, 10), 1, 7)], [], []]
    assert final.late == [False, False, False, False, False, True, False]
    assert final.stream_time == 15
    events += [Idle(1)]  # wall 17, 5 since a@9: 15 + 5
    assert run(Tumbling(size_ms=5), events, idle_advance_ms=5).stream_time == 20
    without = run(Tumbling(size_ms=5), events, emit="final")
    assert without.stream_time == 9
    assert not any(without.late)
    assert without.outputs[3] == [E(W("a", 0, 5), 1, 3)]  # at a@7


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


def test_sliding_semi_late_record_is_in_windows_defined_later() -> None:
    # b@20 moves stream time to 20. a@9: its left window [4, 9] is closed (20 > 9 + 10) and it
    # has no right window, so it is in no window; but [9, 14] could still hold it (20 <= 14 +
    # 10): not late. a@5 then defines the right window [6, 11], which holds a@9 and is open; its
    # own left window [0, 5] is closed and never exists. (Kafka Streams would have forgotten
    # a@9, and emit nothing for a@5.)
    spec = Sliding(max_difference_ms=5, grace_ms=10)
    records = [R("b", 1, 20), R("a", 1, 9), R("a", 1, 5), R("a", 1, 3)]
    result = run(spec, records, emit="update")
    assert result.outputs == [[E(W("b", 15, 20), 1, 20)], [], [E(W("a", 6, 11), 1, 9)], []]
    assert result.late == [False, False, False, True]  # a@3: [3, 8] closed (20 > 18)


def test_sliding_record_that_only_defines_its_right_window_is_not_late() -> None:
    # a@8 at stream time 13: [8, 13] is open; its left window [3, 8] and [5, 10] (holding 8)
    # are closed, but its right window [9, 14] holds a@10 and is open: created
    records = [R("a", 1, 10), R("b", 1, 13), R("a", 1, 8)]
    result = run(Sliding(max_difference_ms=5), records, emit="update")
    assert result.outputs == [
        [E(W("a", 5, 10), 1, 10)],
        [E(W("b", 8, 13), 1, 13)],
        [E(W("a", 9, 14), 1, 10)],
    ]
    assert result.late == [False, False, False]


def test_sliding_record_whose_last_window_is_closed_is_late_even_with_an_open_right_window() -> (
    None
):
    # a@7 at stream time 13: [7, 12] is closed; its right window [8, 13] would hold a@10 and
    # be open (13 <= 13), but Kafka Streams drops the record first
    records = [R("a", 1, 10), R("b", 1, 13), R("a", 1, 7)]
    result = run(Sliding(max_difference_ms=5), records, emit="update")
    assert result.outputs[2] == []
    assert result.late == [False, False, True]


# --- sessions ---------------------------------------------------------------------------------


SESSION_INPUT = [
    R("a", 1, 0),
    R("a", 1, 10),
    R("a", 1, 5),  # bridges [0, 0] and [10, 10]
    R("b", 1, 30),
    R("a", 1, 12),  # [0, 10] is closed (30 > 10 + 5 + 5): a session of its own, closed: late
    R("a", 1, 19),  # 19 + 10 < 30: late
    R("a", 1, 20),  # 20 + 10 >= 30: a new session
]
GAP_5_GRACE_5 = Session(gap_ms=5, grace_ms=5)


def test_session_merge_retracts_the_merged_sessions_with_tombstones() -> None:
    result = run(GAP_5_GRACE_5, SESSION_INPUT, emit="update")
    assert result.outputs == [
        [E(W("a", 0, 0), 1, 0)],
        [E(W("a", 10, 10), 1, 10)],
        [E(W("a", 0, 0), None, 0), E(W("a", 10, 10), None, 10), E(W("a", 0, 10), 3, 10)],
        [E(W("b", 30, 30), 1, 30)],
        [],
        [],
        [E(W("a", 20, 20), 1, 20)],
    ]
    assert result.late == [False, False, False, False, True, True, False]


def test_session_final_is_emitted_once_closed() -> None:
    result = run(GAP_5_GRACE_5, SESSION_INPUT, emit="final")
    assert result.outputs == [[], [], [], [E(W("a", 0, 10), 3, 10)], [], [], []]
    # gap + grace retention: [0, 10] expired at stream time 30 > 10 + 10
    assert result.store == {W("b", 30, 30): (1, 30), W("a", 20, 20): (1, 20)}
    # a session stays open for gap + grace after its end
    records = [R("a", 1, 0), R("b", 1, 3), R("b", 1, 5), R("b", 1, 6)]
    assert run(Session(gap_ms=5), records, emit="final").outputs == [
        [],
        [],
        [],
        [E(W("a", 0, 0), 1, 0)],
    ]


def test_session_record_inside_a_session_retracts_and_rewrites_it() -> None:
    # Kafka Streams removes every merged session and writes the merged one, also when the bounds
    # do not change
    records = [R("a", 2, 0), R("a", 3, 4), R("a", 4, 2)]
    result = run(Session(gap_ms=5), records, emit="update", aggregation=SUM)
    assert result.outputs == [
        [E(W("a", 0, 0), 2, 0)],
        [E(W("a", 0, 0), None, 0), E(W("a", 0, 4), 5, 4)],
        [E(W("a", 0, 4), None, 4), E(W("a", 0, 4), 9, 4)],
    ]


def test_session_duplicate_point_is_rewritten_without_a_tombstone() -> None:
    records = [R("a", 1, 5), R("a", 1, 5), R("a", 1, 6), R("a", 1, 6)]
    result = run(Session(gap_ms=5), records, emit="update")
    assert result.outputs == [
        [E(W("a", 5, 5), 1, 5)],
        [E(W("a", 5, 5), 2, 5)],  # the merged session is [5, 5]: no tombstone
        [E(W("a", 5, 5), None, 5), E(W("a", 5, 6), 3, 6)],
        [E(W("a", 5, 6), None, 6), E(W("a", 5, 6), 4, 6)],
    ]


def test_an_old_record_inside_an_open_session_is_not_late() -> None:
    # [0, 20] is open at stream time 20; a@5 is far behind stream time but joins it
    records = [R("a", 1, t) for t in (0, 5, 10, 15, 20, 5)]
    result = run(Session(gap_ms=5), records, emit="update")
    assert result.outputs[-1] == [E(W("a", 0, 20), None, 20), E(W("a", 0, 20), 6, 20)]
    assert not any(result.late)


def test_a_closed_session_is_never_merged_again() -> None:
    # gap 3: [0, 0] is closed at stream time 6 (6 > 0 + 3) and emitted final; a@3 is within the
    # gap of both [0, 0] and the open [6, 6], but only joins [6, 6]
    records = [R("a", 1, 0), R("a", 1, 6), R("a", 1, 3)]
    final = run(Session(gap_ms=3), records, emit="final")
    assert final.outputs == [[], [E(W("a", 0, 0), 1, 0)], []]
    assert final.store == {W("a", 3, 6): (2, 6)}  # [0, 0] expired: 6 > 0 + 3
    update = run(Session(gap_ms=3), records, emit="update")
    assert update.outputs[2] == [E(W("a", 6, 6), None, 6), E(W("a", 3, 6), 2, 6)]
    assert update.late == [False, False, False]


def test_a_record_near_a_closed_session_is_late_when_its_own_session_is_closed() -> None:
    # gap 2, grace 1: at stream time 6, [0, 2] is closed (6 > 2 + 3); a@4 starts [4, 4] (open:
    # 6 <= 4 + 3); a@1 would start [1, 1], closed: late
    records = [R("a", 1, 0), R("a", 1, 2), R("b", 1, 6), R("a", 1, 4), R("a", 1, 1)]
    result = run(Session(gap_ms=2, grace_ms=1), records, emit="update")
    assert result.outputs[3:] == [[E(W("a", 4, 4), 1, 4)], []]
    assert result.late == [False, False, False, False, True]


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


# --- Kafka Streams' own outputs (/work/notes/ks-semantics.md, measured with its driver) ------


def test_agrees_with_kafka_streams_on_time_windows() -> None:
    records = [R("a", 1, t) for t in (3, 14, 9, 15, 9)]
    assert run(Tumbling(size_ms=10, grace_ms=5), records).outputs == [
        [E(W("a", 0, 10), 1, 3)],
        [E(W("a", 10, 20), 1, 14)],
        [E(W("a", 0, 10), 2, 9)],
        [E(W("a", 10, 20), 2, 15)],
        [],
    ]
    keys_and_times = [("a", 7), ("a", 3), ("b", 12), ("a", 4), ("b", 13), ("a", 6), ("a", 8)]
    records = [R(k, 1, t) for k, t in [*keys_and_times, ("b", 20)]]
    assert run(Hopping(size_ms=10, advance_ms=5, grace_ms=2), records).outputs == [
        [E(W("a", 0, 10), 1, 7), E(W("a", 5, 15), 1, 7)],
        [E(W("a", 0, 10), 2, 7)],
        [E(W("b", 5, 15), 1, 12), E(W("b", 10, 20), 1, 12)],
        [],
        [E(W("b", 5, 15), 2, 13), E(W("b", 10, 20), 2, 13)],
        [E(W("a", 5, 15), 2, 7)],
        [E(W("a", 5, 15), 3, 8)],
        [E(W("b", 15, 25), 1, 20), E(W("b", 20, 30), 1, 20)],
    ]
    records = [R("b", 1, 7), R("a", 1, 8), R("b", 1, 12)]
    assert run(Tumbling(size_ms=10), records, emit="final").outputs[2] == [
        E(W("a", 0, 10), 1, 8),
        E(W("b", 0, 10), 1, 7),
    ]


def test_agrees_with_kafka_streams_on_sessions() -> None:
    gap_10 = Session(gap_ms=10)
    merge = run(gap_10, [R("a", 1, 0), R("a", 1, 30), R("a", 1, 20)])
    assert merge.outputs[2] == [E(W("a", 30, 30), None, 30), E(W("a", 20, 30), 2, 30)]
    bridge = run(Session(gap_ms=5, grace_ms=10), [R("a", 1, 6), R("a", 1, 15), R("a", 1, 10)])
    assert bridge.outputs[2] == [
        E(W("a", 6, 6), None, 6),
        E(W("a", 15, 15), None, 15),
        E(W("a", 6, 15), 3, 15),
    ]
    inside = run(gap_10, [R("a", 1, 10), R("a", 1, 20), R("a", 1, 15)])
    assert inside.outputs[2] == [E(W("a", 10, 20), None, 20), E(W("a", 10, 20), 3, 20)]
    records = [R("a", 1, 0), R("a", 1, 4), R("b", 1, 20), R("a", 1, 12)]
    assert run(gap_10, records).outputs[3] == [E(W("a", 12, 12), 1, 12)]
    assert run(gap_10, [*records, R("b", 1, 40)], emit="final").outputs == [
        [],
        [],
        [E(W("a", 0, 4), 2, 4)],
        [],
        [E(W("a", 12, 12), 1, 12), E(W("b", 20, 20), 1, 20)],
    ]
    records = [R("a", 1, 0), R("b", 1, 11), R("a", 1, 5), R("b", 1, 30)]
    assert run(gap_10, records, emit="final").outputs == [
        [],
        [E(W("a", 0, 0), 1, 0)],
        [],
        [E(W("a", 5, 5), 1, 5), E(W("b", 11, 11), 1, 11)],
    ]
    records = [R("a", 1, 0), R("b", 1, 10), R("b", 1, 11)]
    assert run(gap_10, records, emit="final").outputs == [[], [], [E(W("a", 0, 0), 1, 0)]]
    records = [R("a", 1, 10), R("b", 1, 8), R("b", 1, 10), R("c", 1, 30)]
    assert run(Session(gap_ms=5), records, emit="final").outputs[3] == [
        E(W("b", 8, 10), 2, 10),
        E(W("a", 10, 10), 1, 10),
    ]


def test_agrees_with_kafka_streams_on_sliding_windows() -> None:
    records = [R("a", 1, t) for t in (20, 25, 31, 23, 41, 30, 52)]
    d10 = Sliding(max_difference_ms=10)
    update = run(d10, records)
    assert [sorted(out) for out in update.outputs] == [
        [E(W("a", 10, 20), 1, 20)],
        [E(W("a", 15, 25), 2, 25), E(W("a", 21, 31), 1, 25)],
        [E(W("a", 21, 31), 2, 31), E(W("a", 26, 36), 1, 31)],
        # a@23 is semi-late: [15, 25] and its left window [13, 23] are closed
        [E(W("a", 21, 31), 3, 31), E(W("a", 24, 34), 2, 31)],
        [E(W("a", 31, 41), 2, 41), E(W("a", 32, 42), 1, 41)],
        [],  # a@30: 30 + 10 < 41
        # Kafka Streams forwards [42, 52] twice here (its left window and the previous record's
        # right window are the same window)
        [E(W("a", 42, 52), 1, 52)],
    ]
    assert update.late == [False] * 5 + [True, False]
    final = run(d10, records, emit="final")
    assert [out for out in final.outputs if out] == [
        [E(W("a", 10, 20), 1, 20)],
        [E(W("a", 15, 25), 2, 25)],
        [E(W("a", 21, 31), 3, 31), E(W("a", 24, 34), 2, 31), E(W("a", 26, 36), 1, 31)],
        [E(W("a", 31, 41), 2, 41), E(W("a", 32, 42), 1, 41)],
    ]
    assert [i for i, out in enumerate(final.outputs) if out] == [1, 2, 4, 6]
    early = run(d10, [R("a", 1, t) for t in (3, 12, 7, 1, 15)])
    assert [sorted(out) for out in early.outputs] == [
        [E(W("a", 0, 10), 1, 3)],
        [E(W("a", 2, 12), 2, 12), E(W("a", 4, 14), 1, 12)],
        [E(W("a", 2, 12), 3, 12), E(W("a", 4, 14), 2, 12), E(W("a", 8, 18), 1, 12)],
        [],
        [E(W("a", 5, 15), 3, 15), E(W("a", 8, 18), 2, 15), E(W("a", 13, 23), 1, 15)],
    ]


def test_semi_late_sliding_records_count_where_kafka_streams_leaves_them_out() -> None:
    # Kafka Streams: a[50, 60] = 9 (it leaves a@51, semi-late, out of [50, 60], created later)
    records = [R("a", 6, 53), R("c", 1, 58), R("a", -3, 51), R("a", 3, 60), R("a", 4, 88)]
    final = run(Sliding(max_difference_ms=10), records, emit="final", aggregation=SUM)
    assert E(W("a", 50, 60), 6, 60) in final.outputs[4]
