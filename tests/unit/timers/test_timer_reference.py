"""The reference models (reference.py) on small cases worked out by hand, so that they can be
trusted as the expected side of the property tests."""

from __future__ import annotations

from tests.unit.timers.reference import (
    AdvanceStream,
    AdvanceWall,
    Cancel,
    CountModel,
    Delete,
    Get,
    Out,
    Pipe,
    Put,
    Scan,
    SetTimer,
    TickModel,
    TimerModel,
    TtlModel,
)


def rec(key: str, ts: int) -> Out:
    return Out(key, {"rec": ts}, ts, headers=True)


def fired(key: str, name: str, at: int, stamp: int | None = None) -> Out:
    return Out(key, {"fired": name, "at": at}, at if stamp is None else stamp)


def test_stream_timers_fire_after_the_record_by_time_then_key_bytes_then_name() -> None:
    model = TimerModel()
    assert model.step(Pipe("b", 1, (SetTimer("x", "stream", "abs", 10),))) == [rec("b", 1)]
    model.step(Pipe("ab", 2, (SetTimer("y", "stream", "abs", 10),)))
    model.step(Pipe("ab", 3, (SetTimer("x", "stream", "abs", 10),)))
    model.step(Pipe("a", 4, (SetTimer("z", "stream", "ts", 3),)))  # at 7
    assert model.pending() == [
        ("a", "z", "stream", 7),
        ("ab", "x", "stream", 10),
        ("ab", "y", "stream", 10),
        ("b", "x", "stream", 10),
    ]
    assert model.step(Pipe("c", 12)) == [
        rec("c", 12),
        fired("a", "z", 7),
        fired("ab", "x", 10),
        fired("ab", "y", 10),
        fired("b", "x", 10),
    ]
    assert model.pending() == [] and model.fired == 4


def test_replacing_moves_a_timer_across_clocks_and_cancel_removes_it() -> None:
    model = TimerModel(start_wall=100)
    model.step(Pipe("k", 0, (SetTimer("t", "stream", "abs", 5),)))
    model.step(Pipe("k", 1, (SetTimer("t", "wall", "wall", 10),)))  # replaces: wall at 110
    assert model.pending() == [("k", "t", "wall", 110)]
    assert model.step(AdvanceStream(50)) == []
    assert model.step(AdvanceWall(10)) == [fired("k", "t", 110, stamp=110)]
    model.step(Pipe("k", 51, (SetTimer("t", "stream", "abs", 60), Cancel("t"))))
    assert model.step(AdvanceStream(100)) == [] and model.pending() == []


def test_a_wall_firing_is_stamped_with_the_wall_clock_not_its_time() -> None:
    model = TimerModel()
    model.step(Pipe("k", 0, (SetTimer("t", "wall", "abs", 5),)))
    assert model.step(AdvanceWall(8)) == [fired("k", "t", 5, stamp=8)]


def test_timers_set_while_firing_fire_in_the_same_pass_after_the_group() -> None:
    on_fire = {"x": (SetTimer("y", "stream", "abs", 3),)}
    model = TimerModel(on_fire=on_fire, fire_actions_limit=10)
    model.step(Pipe("b", 0, (SetTimer("x", "stream", "abs", 5),)))
    model.step(Pipe("a", 0, (SetTimer("x", "stream", "abs", 5),)))
    # "a"/x at 5 sets "a"/y at 3 (due): it fires after the group at 5.
    assert model.step(AdvanceStream(5)) == [
        fired("a", "x", 5),
        fired("b", "x", 5),
        fired("a", "y", 3),
        fired("b", "y", 3),
    ]


def test_a_stream_timer_a_wall_firing_sets_waits_for_the_next_stream_pass() -> None:
    on_fire = {"w": (SetTimer("s", "stream", "abs", 2),)}
    model = TimerModel(on_fire=on_fire, fire_actions_limit=1)
    assert model.step(Pipe("k", 9, (SetTimer("w", "wall", "abs", 0),))) == [
        rec("k", 9),
        fired("k", "w", 0, stamp=0),
    ]
    assert model.pending() == [("k", "s", "stream", 2)]
    assert model.step(AdvanceWall(0)) == [fired("k", "s", 2)]


def test_firing_actions_stop_after_the_limit() -> None:
    on_fire = {"t": (SetTimer("t", "stream", "ts", 1),)}  # re-arms itself 1 ms later
    model = TimerModel(on_fire=on_fire, fire_actions_limit=3)
    model.step(Pipe("k", 0, (SetTimer("t", "stream", "abs", 1),)))
    assert model.step(AdvanceStream(100)) == [fired("k", "t", at) for at in (1, 2, 3, 4)]
    assert model.fired == 4 and model.pending() == []


def test_ttl_reads_hide_at_expiry_and_the_pass_removes_in_expiry_then_key_order() -> None:
    model = TtlModel(ttl_ms=10)
    model.step(Pipe("r", 5, (Put("b", 1), Put("a", 2))))
    model.step(Pipe("r", 7, (Put("c", 3),)))
    assert model.step(Pipe("r", 14, (Get("a"), Scan()))) == [
        Out("r", {"get": "a", "value": 2}, 14, True),
        Out("r", {"all": [["a", 2], ["b", 1], ["c", 3]]}, 14, True),
    ]
    assert model.step(Pipe("r", 15, (Get("a"),))) == [
        Out("r", {"get": "a", "value": None}, 15, True),
        Out("a", {"expired": "s", "last": 2, "ctx_key": "a"}, 15),
        Out("b", {"expired": "s", "last": 1, "ctx_key": "b"}, 15),
    ]
    assert model.visible() == {"c": 3} and list(model.entries) == ["c"]


def test_a_write_or_delete_of_an_expired_key_reports_its_expiry_first() -> None:
    model = TtlModel(ttl_ms=10)
    model.step(Pipe("r", 0, (Put("a", 1), Put("b", 2))))
    assert model.step(Pipe("r", 20, (Put("a", 5), Delete("b")))) == [
        Out("a", {"expired": "s", "last": 1, "ctx_key": "a"}, 10),
        Out("b", {"expired": "s", "last": 2, "ctx_key": "b"}, 10),
    ]
    assert model.entries == {"a": (5, 20)}
    assert model.expired == [("a", 1), ("b", 2)]


def test_a_wall_ttl_counts_from_the_wall_clock_at_the_write() -> None:
    model = TtlModel(ttl_ms=10, clock="wall", start_wall=100)
    model.step(Pipe("r", 0, (Put("a", 1),)))
    assert model.step(AdvanceStream(1_000)) == []
    assert model.step(AdvanceWall(9)) == []
    assert model.step(AdvanceWall(1)) == [
        Out("a", {"expired": "s", "last": 1, "ctx_key": "a"}, 110)
    ]


def test_count_with_ttl_forwards_a_tombstone_and_starts_again() -> None:
    model = CountModel(ttl_ms=10)
    assert model.step(Pipe("a", 0)) == [Out("a", 1, 0, True)]
    assert model.step(Pipe("a", 9)) == [Out("a", 2, 9, True)]
    assert model.step(Pipe("b", 18)) == [Out("b", 1, 18, True)]
    assert model.step(Pipe("a", 19)) == [Out("a", None, 19), Out("a", 1, 19, True)]
    assert model.step(Pipe("a", 5)) == [Out("a", 2, 5, True)]  # out of order: written at 19
    assert model.step(AdvanceStream(29)) == [Out("b", None, 28), Out("a", None, 29)]


def test_wall_ticks_start_one_period_after_the_start_and_never_catch_up() -> None:
    model = TickModel(every_ms=100, start_wall=1_000)
    assert model.step(AdvanceWall(99)) == []
    assert model.step(AdvanceWall(1)) == [Out(None, {"tick": 1_100}, 1_100)]
    assert model.step(AdvanceWall(250)) == [Out(None, {"tick": 1_350}, 1_350)]
    assert model.step(AdvanceWall(99)) == []
    assert model.step(Pipe("k", 0)) == [Out("k", {"rec": 0}, 0, True)]
    assert model.step(AdvanceWall(1)) == [Out(None, {"tick": 1_450}, 1_450)]


def test_stream_ticks_anchor_on_the_first_record_then_tick_once_per_crossing() -> None:
    model = TickModel(every_ms=100, clock="stream")
    assert model.step(AdvanceWall(1_000)) == []
    assert model.step(Pipe("k", 150)) == [Out("k", {"rec": 150}, 150, True)]
    assert model.step(Pipe("k", 199))[1:] == []
    assert model.step(Pipe("k", 120))[1:] == []
    assert model.step(Pipe("k", 450))[1:] == [Out(None, {"tick": 450}, 450)]
    assert model.step(AdvanceStream(499)) == []
    assert model.step(AdvanceStream(500)) == [Out(None, {"tick": 500}, 500)]
