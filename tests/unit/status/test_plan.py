"""The load plan on `<app>-metadata` (`processor.status.plan`): whatever a record under its key
holds, the board takes it or drops the plan (counted, logged), never raises; the last record
alone decides, so a worker that reads the topic after compaction agrees with one that read it
all; with a token only signed plans count; no status can be taken for a plan, nor a plan for a
status."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.ids import TaskId
from processor.status import fields
from processor.status.plan import MAX_WEIGHT, PLAN_FORMAT, PLAN_KEY, LoadPlan, PlanBoard
from processor.status.record import IgnoredReason, InstancePhase, InstanceStatus, StatusBoard
from processor.status.signing import SIGNATURE_HEADER, StatusSigner

PLAN = LoadPlan(
    version=3,
    leader="w0",
    members=("w2", "w0", "w1"),
    weights={TaskId(0, 3): 16, TaskId(0, 7): 5, TaskId(0, 1): 1},
    made_ms=1_764_770_000_000,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


def _data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PLAN.to_json())
    data.update(changes)
    return data


def _raw(**changes: Any) -> bytes:
    return json.dumps(_data(**changes)).encode()


def test_a_plan_goes_through_the_board_as_it_was_published() -> None:
    board = StatusBoard()
    board.apply(PLAN_KEY, PLAN.to_json())

    assert board.plans.latest == PLAN
    assert board.plans.latest.members == ("w0", "w1", "w2")
    # Weight 1 is the default: not written.
    assert dict(PLAN.weights) == {TaskId(0, 3): 16, TaskId(0, 7): 5}
    assert json.loads(PLAN.to_json())["weights"] == {"0_3": 16, "0_7": 5}
    assert PLAN.made_for(["w1", "w2", "w0"]) and not PLAN.made_for(["w0", "w1"])
    assert board.statuses == {} and sum(board.ignored.values()) == 0


def test_the_plan_key_is_no_instance_id_and_no_status_is_a_plan() -> None:
    with pytest.raises(fields.InvalidStatusError):
        fields.instance_name(PLAN_KEY.decode(), "instance_id")
    board = StatusBoard()
    status = InstanceStatus("w0", InstancePhase.RUNNING, updated_ms=1)
    board.apply(PLAN_KEY, status.to_json())  # a status written under the plan's key
    board.apply(b"w0", PLAN.to_json())  # a plan written under an instance id

    assert board.plans.latest is None and board.statuses == {}
    assert board.ignored == {IgnoredReason.INVALID: 2}


@pytest.mark.parametrize(
    "changes",
    [
        {"format": PLAN_FORMAT + 1},
        {"format": PLAN_FORMAT - 1},  # placed by another weighted rule: never used
        {"format": None},
        {"version": -1},
        {"version": "3"},
        {"leader": "w1"},  # not the smallest member
        {"leader": ""},
        {"members": []},
        {"members": ["w0", "w0", "w1"]},
        {"members": "w0"},
        {"weights": {"0_3": 0}},
        {"weights": {"0_3": MAX_WEIGHT + 1}},
        {"weights": {"0_3": 2.0}},
        {"weights": {"0_3": True}},
        {"weights": {"x_3": 2}},
        {"weights": [["0_3", 2]]},
        {"weights": None},
        {"made_ms": -5},
    ],
)
def test_fields_that_are_refused(changes: dict[str, object]) -> None:
    board = StatusBoard()
    board.apply(PLAN_KEY, _raw(**changes))

    assert board.plans.latest is None
    assert board.ignored == {IgnoredReason.INVALID: 1}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(_data())), json_values), st.booleans())
def test_any_json_in_the_known_fields_is_a_plan_or_none_never_raised(
    changes: dict[str, object], signed: bool
) -> None:
    signer = StatusSigner("t", "app") if signed else None
    board = PlanBoard(signer=signer)
    raw = _raw(**changes)
    headers = [] if signer is None else [(SIGNATURE_HEADER, signer.sign(PLAN_KEY, raw))]
    board.apply(raw, headers)
    plan = board.latest
    if plan is None:
        assert sum(board.ignored.values()) == 1
        return
    assert plan.leader == min(plan.members) and len(set(plan.members)) == len(plan.members)
    assert all(type(w) is int and 1 <= w <= MAX_WEIGHT for w in plan.weights.values())
    assert all(isinstance(t, TaskId) for t in plan.weights)
    assert type(plan.version) is int and plan.version >= 0


def _record(kind: str, version: int) -> bytes | None:
    if kind == "valid":
        return LoadPlan(version, "a", ("a", "b"), {TaskId(0, version % 4): 2}).to_json()
    if kind == "tombstone":
        return None
    return _raw(leader="zz") if kind == "invalid" else b"\xff not json"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["valid", "tombstone", "invalid", "garbage"]), min_size=1))
def test_the_last_record_alone_decides(kinds: list[str]) -> None:
    """Compaction may keep only the last record under the key: a worker reading only that one
    must end with the same plan as one that read them all."""
    everything = PlanBoard()
    for version, kind in enumerate(kinds, start=1):
        everything.apply(_record(kind, version))
    compacted = PlanBoard()
    compacted.apply(_record(kinds[-1], len(kinds)))

    assert everything.latest == compacted.latest
    valid = [v for v, k in enumerate(kinds, start=1) if k == "valid"]
    assert everything.highest_version == max(valid, default=0)


def test_with_a_token_only_plans_signed_with_it_count() -> None:
    signer = StatusSigner("token", "app")
    board = StatusBoard(signer=signer)
    raw = PLAN.to_json()
    board.apply(PLAN_KEY, raw, [(SIGNATURE_HEADER, signer.sign(PLAN_KEY, raw))])
    assert board.plans.latest == PLAN

    board.apply(PLAN_KEY, raw)  # unsigned: drops the plan
    assert board.plans.latest is None
    # A status's signature does not make a plan: the signature covers the key.
    board.apply(PLAN_KEY, raw, [(SIGNATURE_HEADER, signer.sign(b"w0", raw))])
    other = StatusSigner("token", "other-app")
    board.apply(PLAN_KEY, raw, [(SIGNATURE_HEADER, other.sign(PLAN_KEY, raw))])
    board.apply(PLAN_KEY, None)  # an unsigned tombstone
    assert board.plans.latest is None
    assert board.ignored == {IgnoredReason.UNSIGNED: 2, IgnoredReason.BAD_SIGNATURE: 2}

    board.apply(PLAN_KEY, None, [(SIGNATURE_HEADER, signer.sign(PLAN_KEY, None))])
    assert sum(board.ignored.values()) == 4  # a signed tombstone withdraws the plan quietly


def test_ignored_plans_are_logged_then_only_counted(caplog: pytest.LogCaptureFixture) -> None:
    board = StatusBoard()
    with caplog.at_level(logging.WARNING, logger="processor.status"):
        for _ in range(25):
            board.apply(PLAN_KEY, _raw(leader="w2"))

    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10
    assert "not by its members' leader 'w0'" in lines[0]
    assert "balanced by count" in lines[0]
    assert board.ignored == {IgnoredReason.INVALID: 25}


def test_fields_a_newer_version_adds_are_ignored() -> None:
    board = StatusBoard()
    board.apply(PLAN_KEY, _raw(generation=12, lags={"0_1": [1]}))
    assert board.plans.latest == PLAN
