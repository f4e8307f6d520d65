"""Statuses read from `<app>-metadata` (`processor.status.record`): whatever a record holds, the
board takes it or ignores it (counted, logged once per instance id), and never raises; freshness
is judged by the reader's clocks; with a token only signed statuses are believed; forwarded
queries go to members only (`processor.runtime.query_source`)."""

from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from processor.ids import TaskId
from processor.metrics import WorkerMetrics, WorkerSnapshot
from processor.runtime.assignment import Assignment
from processor.runtime.query_source import WorkerQuerySource
from processor.status.record import (
    MAX_CLOCK_AHEAD_MS,
    MAX_STATUS_BYTES,
    IgnoredReason,
    InstancePhase,
    InstanceStatus,
    StatusBoard,
)
from processor.status.signing import SIGNATURE_HEADER, StatusSigner

FIELDS = [
    "instance_id",
    "phase",
    "host",
    "pid",
    "endpoint",
    "members",
    "active_tasks",
    "standby_tasks",
    "restoring_tasks",
    "lags",
    "warming_for",
    "updated_ms",
    "task_rates",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=15,
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _valid(instance: str = "w1", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        InstanceStatus(
            instance,
            InstancePhase.RUNNING,
            host="h",
            pid=7,
            endpoint="http://127.0.0.1:9000",
            members=("w0", instance),
            active_tasks=("0_1",),
            standby_tasks=("0_2",),
            restoring_tasks=("0_2",),
            lags={"0_1": 0, "0_2": 5},
            updated_ms=_now_ms(),
            task_rates={"0_1": 12.5},
        ).to_json()
    )
    data.update(changes)
    return data


def _apply(board: StatusBoard, key: bytes | None, data: object, headers: Any = ()) -> None:
    board.apply(key, json.dumps(data).encode(), headers)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- arbitrary input ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_value_is_taken_or_ignored_never_raised(value: object) -> None:
    board = StatusBoard()
    board.apply(b"w1", json.dumps(value).encode())
    assert len(board.statuses) + sum(board.ignored.values()) == 1


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values))
def test_any_json_in_the_known_fields_is_taken_or_ignored_never_raised(
    changes: dict[str, object],
) -> None:
    board = StatusBoard()
    _apply(board, b"w1", _valid(**changes))
    status = board.statuses.get("w1")
    if status is None:
        assert sum(board.ignored.values()) == 1
        return
    # Taken: every field has the type the code relies on.
    assert status.instance_id == "w1" and isinstance(status.phase, InstancePhase)
    assert all(type(v) is int and v >= 0 for v in status.lags.values())
    assert all(TaskId.parse(t) for t in (*status.active_tasks, *status.lags))
    assert status.endpoint is None or status.endpoint.startswith(("http://", "https://"))
    assert type(status.updated_ms) is int and type(status.pid) is int
    assert all(type(r) is float and 0 <= r < float("inf") for r in status.task_rates.values())


@settings(max_examples=300, deadline=None)
@given(
    st.none() | st.binary(max_size=50),
    st.none() | st.binary(max_size=300),
    st.lists(st.tuples(st.sampled_from([SIGNATURE_HEADER, "x"]), st.none() | st.binary())),
    st.booleans(),
)
def test_any_record_is_taken_or_ignored_never_raised(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]], signed: bool
) -> None:
    board = StatusBoard(signer=StatusSigner("t", "app") if signed else None)
    board.apply(key, value, headers)


# --- the records of issue 13 ----------------------------------------------------------------


def test_the_ghost_record_is_ignored_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board = StatusBoard()
    for _ in range(3):
        _apply(board, b"ghost", {"instance_id": "ghost", "lags": None}, ())
    board.apply(b"ghost", b"{", origin="app-metadata[0]@7")

    assert board.statuses == {}
    assert board.ignored == {IgnoredReason.INVALID: 3, IgnoredReason.NOT_JSON: 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "ignored the status 'ghost' on the metadata topic (invalid): lags must be an object of "
        "task ids to lags, not null; more from it are only counted "
        "(processor_metadata_records_ignored_total)"
    ]


def test_an_ignored_record_leaves_the_previous_status() -> None:
    board = StatusBoard()
    _apply(board, b"w1", _valid())
    _apply(board, b"w1", _valid(lags=None))

    assert board.statuses["w1"].lags == {"0_1": 0, "0_2": 5}


@pytest.mark.parametrize("depth", [100_000, 30_000, 1_000])
def test_deep_nesting_is_refused_quickly(depth: int) -> None:
    board = StatusBoard()
    started = time.monotonic()
    board.apply(b"deep", b"[" * depth + b"]" * depth)
    board.apply(b"deep", b'{"instance_id": "deep", "lags": ' + b"[" * depth + b"]" * depth + b"}")
    board.apply(b"deep", b'{"instance_id": "deep", "x": ' + b"{" * depth + b"}" * depth + b"}")

    assert time.monotonic() - started < 1.0
    assert board.statuses == {}
    assert sum(board.ignored.values()) == 3


def test_nesting_in_a_field_the_format_does_not_know_is_not_walked() -> None:
    board = StatusBoard()
    _apply(board, b"w1", _valid(future_field=[[[[[{"a": [1]}]]]]]))

    assert "w1" in board.statuses


def test_a_value_over_the_limit_is_refused_unread() -> None:
    board = StatusBoard()
    board.apply(b"big", b"[" * (MAX_STATUS_BYTES + 1))

    assert board.ignored == {IgnoredReason.TOO_LARGE: 1}


def test_the_largest_real_status_fits() -> None:
    tasks = [f"{s}_{p}" for s in range(20) for p in range(1000)]
    status = InstanceStatus(
        "a" * 36,
        InstancePhase.RUNNING,
        host="h" * 60,
        endpoint="http://a-long-host-name.example.internal:65535",
        members=tuple(f"{'m' * 36}{i}" for i in range(50)),
        active_tasks=tuple(tasks[:10_000]),
        standby_tasks=tuple(tasks[10_000:]),
        restoring_tasks=tuple(tasks[:10_000]),
        lags=dict.fromkeys(tasks, 1_234_567),
        updated_ms=_now_ms(),
    )
    board = StatusBoard()
    board.apply(status.instance_id.encode(), status.to_json())

    assert board.statuses[status.instance_id] == status


def test_a_status_dated_far_ahead_is_refused_a_little_ahead_taken() -> None:
    board = StatusBoard()
    _apply(board, b"j1", _valid("j1", updated_ms=_now_ms() + MAX_CLOCK_AHEAD_MS + 60_000))
    _apply(board, b"j2", _valid("j2", updated_ms=_now_ms() + 60_000))

    assert board.ignored == {IgnoredReason.CLOCK_AHEAD: 1}
    assert list(board.statuses) == ["j2"]


def test_a_joiner_counts_while_received_recently_whatever_its_date() -> None:
    clock = Clock()
    board = StatusBoard(clock=clock)
    ahead = _now_ms() + MAX_CLOCK_AHEAD_MS - 1000
    _apply(board, b"j1", _valid("j1", phase="warming_up", updated_ms=ahead))
    _apply(board, b"j2", _valid("j2", phase="warming_up", updated_ms=_now_ms() - 60_000))

    assert board.joiners({"w0"}, _now_ms(), max_age_ms=30_000) == ["j1"]
    clock.now += 29
    assert board.joiners({"w0"}, _now_ms(), max_age_ms=30_000) == ["j1"]
    clock.now += 2  # j1 fell silent: its date in the future does not keep it a joiner
    assert board.joiners({"w0"}, _now_ms(), max_age_ms=30_000) == []


# --- fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["http://127.0.0.1:8080", "https://w1.example.com:443/", "http://[::1]:80", None],
)
def test_endpoints_that_are_taken(endpoint: str | None) -> None:
    board = StatusBoard()
    _apply(board, b"w1", _valid(endpoint=endpoint))

    assert board.statuses["w1"].endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://h",
        "http://h:0",
        "http://h:65536",
        "http://:80",
        "ftp://h:21",
        "javascript:alert(1)",
        "http://user:pw@h:80",
        "http://h:80/path",
        "http://h:80?q=1",
        "http://h:80#f",
        "http://::1:80",
        "http://h:80\n",
        "",
        7,
        ["http://h:80"],
    ],
)
def test_endpoints_that_are_refused(endpoint: object) -> None:
    board = StatusBoard()
    _apply(board, b"w1", _valid(endpoint=endpoint))

    assert board.statuses == {}
    assert board.ignored == {IgnoredReason.INVALID: 1}


@pytest.mark.parametrize(
    "changes",
    [
        {"active_tasks": ["0_1", "x_1"]},
        {"standby_tasks": ["1"]},
        {"restoring_tasks": ["²_1"]},
        {"lags": {"0_1": -1}},
        {"lags": {"0_1": True}},
        {"lags": {"0_1": 1.5}},
        {"lags": {"0-1": 1}},
        {"lags": [["0_1", 1]]},
        {"phase": "exploding"},
        {"phase": None},
        {"pid": "7"},
        {"updated_ms": 2**63},
        {"members": ["w0", ""]},
        {"members": "w0"},
        {"warming_for": [["j1"]]},
        {"host": "h" * 256},
        {"instance_id": None},
        {"instance_id": "w\x001"},
        {"active_tasks": ["0_1"] * 100_001},
        {"task_rates": {"0_1": -1}},
        {"task_rates": {"0_1": "5"}},
        {"task_rates": {"0_1": True}},
        {"task_rates": {"0_1": float("nan")}},
        {"task_rates": {"0_1": float("inf")}},
        {"task_rates": {"0_1": 1e13}},
        {"task_rates": {"x": 1.0}},
        {"task_rates": [["0_1", 1.0]]},
    ],
)
def test_fields_that_are_refused(changes: dict[str, object]) -> None:
    board = StatusBoard()
    _apply(board, b"w1", _valid(**changes))

    assert board.statuses == {}
    assert sum(board.ignored.values()) == 1


def test_a_status_under_another_instances_key_is_refused() -> None:
    board = StatusBoard()
    _apply(board, b"w0", _valid("w1"))
    board.apply(None, b"{}")

    assert board.ignored == {IgnoredReason.KEY_MISMATCH: 1, IgnoredReason.INVALID: 1}


def test_fields_a_newer_version_adds_are_ignored_missing_ones_default() -> None:
    board = StatusBoard()
    _apply(board, b"w1", {"instance_id": "w1", "zones": {"a": [1]}})

    assert board.statuses["w1"] == InstanceStatus("w1", InstancePhase.RUNNING)


# --- signatures -----------------------------------------------------------------------------


def _signed(
    signer: StatusSigner, key: bytes, value: bytes | None
) -> list[tuple[str, bytes | None]]:
    return [(SIGNATURE_HEADER, signer.sign(key, value))]


def test_with_a_token_only_statuses_signed_with_it_are_taken() -> None:
    signer = StatusSigner("secret", "app")
    board = StatusBoard(signer=signer)
    w1 = json.dumps(_valid("w1")).encode()
    evil = json.dumps(_valid("w1", endpoint="http://evil:80")).encode()

    board.apply(b"w1", w1, _signed(signer, b"w1", w1))
    board.apply(b"w1", evil)  # unsigned
    board.apply(b"w1", evil, [(SIGNATURE_HEADER, b"0" * 64)])
    board.apply(b"w1", evil, _signed(StatusSigner("guess", "app"), b"w1", evil))
    board.apply(b"w1", evil, _signed(StatusSigner("secret", "other-app"), b"w1", evil))
    board.apply(b"w1", evil, _signed(signer, b"w1", w1))  # another value's signature
    board.apply(b"w1", None)  # an unsigned tombstone

    assert board.statuses["w1"].endpoint == "http://127.0.0.1:9000"
    assert board.ignored == {IgnoredReason.UNSIGNED: 2, IgnoredReason.BAD_SIGNATURE: 4}
    board.apply(b"w1", None, _signed(signer, b"w1", None))
    assert board.statuses == {}


def test_a_signature_is_bound_to_its_key() -> None:
    signer = StatusSigner("secret", "app")
    value = json.dumps(_valid("w1")).encode()

    assert signer.verifies(b"w1", value, signer.sign(b"w1", value))
    assert not signer.verifies(b"w", b"1" + value, signer.sign(b"w1", value))
    assert not signer.verifies(b"w1", None, signer.sign(b"w1", b""))


# --- who receives forwarded queries ---------------------------------------------------------


def test_forwarded_queries_go_to_members_only() -> None:
    board = StatusBoard()
    for instance in ("w1", "evil"):
        _apply(board, instance.encode(), _valid(instance, endpoint=f"http://{instance}:80"))
    worker = SimpleNamespace(
        instance_id="w0",
        endpoint="http://w0:80",
        board=board,
        assignment=Assignment(active={TaskId(0, 0): "w0", TaskId(0, 1): "w1"}),
    )
    source = WorkerQuerySource(cast(Any, worker), {})

    assert source.endpoint("w0") == "http://w0:80"
    assert source.endpoint("w1") == "http://w1:80"
    assert source.endpoint("evil") is None
    assert sorted(source.instances()) == ["w0", "w1"]
    worker.assignment = None
    assert source.endpoint("w1") is None


def test_the_status_page_knows_members_and_statuses_and_asks_members_only() -> None:
    board = StatusBoard()
    _apply(board, b"w1", _valid("w1", endpoint="http://w1:80", active_tasks=["0_5"]))
    _apply(board, b"gone", _valid("gone", endpoint="http://gone:80", active_tasks=["0_3"]))
    worker = SimpleNamespace(
        instance_id="w0",
        endpoint="http://w0:80",
        board=board,
        assignment=Assignment(
            active={TaskId(0, 0): "w0", TaskId(0, 1): "w1"}, standby={"w0": {TaskId(0, 1)}}
        ),
    )
    known = WorkerQuerySource(cast(Any, worker), {}).known_instances()

    assert sorted(known) == ["gone", "w0", "w1"]
    # Members: their tasks by the assignment (not their status), their endpoint.
    assert (known["w1"].active_tasks, known["w1"].endpoint) == (("0_1",), "http://w1:80")
    assert (known["w0"].active_tasks, known["w0"].standby_tasks) == (("0_0",), ("0_1",))
    assert known["w0"].phase == ""  # no status of its own read yet
    # Not a member: what its status says, and nobody asks it for anything.
    assert (known["gone"].active_tasks, known["gone"].endpoint) == (("0_3",), None)


def test_ignored_records_are_a_metric_by_reason() -> None:
    metrics = WorkerMetrics()
    metrics.publish(WorkerSnapshot(metadata_ignored={"invalid": 3, "unsigned": 0}))
    text = generate_latest(metrics.registry).decode()

    assert 'processor_metadata_records_ignored_total{reason="invalid"} 3.0' in text
    assert 'processor_metadata_records_ignored_total{reason="unsigned"} 0.0' in text
