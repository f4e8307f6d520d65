"""Windows through `StoreQueries` on two instances: w0 asked directly, w1 behind its real app
(`build_app`, reached in-process), each running half the tasks and holding a standby of the
other half. One key's windows are read where its task is, like a key lookup (forwarded once,
with the token; a standby with stale=true); every key's windows are a fan-out paged without
skipping or repeating a window; key-value reads of windowed stores, and the reverse, are 400."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from processor.ids import TaskId
from processor.query.forwarding import Forwarder, Unavailable
from processor.query.partitioner import partition_for
from processor.query.queries import StoreQueries
from processor.query.server import build_app
from processor.query.source import LocalRead, Owners, StoreInfo
from processor.serdes import IntSerde, JsonSerde, StringSerde
from processor.state.backend import TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.topology.graph import StoreKind, StoreSpec

PARTITIONS = 6
TASKS = [TaskId(0, p) for p in range(PARTITIONS)]
OWNERS = {
    t: Owners("w0" if t.partition < 3 else "w1", ("w1" if t.partition < 3 else "w0",))
    for t in TASKS
}
TOKEN = "t0ken"


STORES = {
    "per-minute": StoreInfo(
        StoreSpec("per-minute", StringSerde(), IntSerde(), StoreKind.WINDOW), 0, PARTITIONS
    ),
    "sessions": StoreInfo(
        StoreSpec("sessions", StringSerde(), JsonSerde(), StoreKind.SESSION), 0, PARTITIONS
    ),
    "counts": StoreInfo(StoreSpec("counts", StringSerde(), IntSerde()), 0, PARTITIONS),
}
KEYS = [f"user-{i}" for i in range(12)]
MINUTE = 60_000


def window_entry(key: str, start: int, end: int, ts: int, value: bytes) -> tuple[bytes, bytes]:
    raw = key.encode()
    return (
        b"W"
        + len(raw).to_bytes(4, "big")
        + raw
        + start.to_bytes(8, "big")
        + end.to_bytes(8, "big"),
        ts.to_bytes(8, "big") + value,
    )


def task_of(key: str) -> TaskId:
    return TaskId(0, partition_for(key.encode(), PARTITIONS))


def expected_minutes(key: str) -> list[tuple[int, int]]:
    """(start, count) of `key`'s one-minute windows: user-i has i + 1 of them, window m
    counting m + 1."""
    return [(m * MINUTE, m + 1) for m in range(KEYS.index(key) + 1)]


def sessions_of(key: str) -> list[tuple[int, int]]:
    """Three sessions per key: [0, 100], [1000, 1000] and [5000, 9000]."""
    del key
    return [(0, 100), (1000, 1000), (5000, 9000)]


def backends() -> dict[TaskId, InMemoryBackend]:
    """Every task's state: the windows, the sessions and a key-value count of every key, with
    an index and a meta entry in each windowed store as a window store keeps them."""
    held = {t: InMemoryBackend(list(STORES)) for t in TASKS}
    for key in KEYS:
        minutes = [
            window_entry(key, s, s + MINUTE, s + 59_999, IntSerde().serialize(n) or b"")
            for s, n in expected_minutes(key)
        ]
        sessions = [
            window_entry(key, s, e, e, JsonSerde().serialize({"clicks": e - s}) or b"")
            for s, e in sessions_of(key)
        ]
        other = [(b"I" + bytes(8) + minutes[0][0], b""), (b"Memitted", bytes(8))]
        held[task_of(key)].write(
            {
                "per-minute": minutes + other,
                "sessions": sessions + other,
                "counts": [(key.encode(), IntSerde().serialize(1) or b"")],
            },
            {},
        )
    return held


class Instance:
    """A `QuerySource` for `me`: it runs the tasks OWNERS gives it and holds a standby of the
    others; `owners` may be changed by a test."""

    def __init__(self, me: str, state: Mapping[TaskId, InMemoryBackend]) -> None:
        self.me = me
        self.state = state
        self.table = dict(OWNERS)

    @property
    def instance_id(self) -> str:
        return self.me

    def stores(self) -> Mapping[str, StoreInfo]:
        return STORES

    def owners(self, task: TaskId) -> Owners:
        return self.table[task]

    def endpoint(self, instance: str) -> str | None:
        return f"http://{instance}"

    def instances(self) -> dict[str, dict[str, Any]]:
        return {}

    def read_local(
        self, task: TaskId, read: Callable[[TaskStateBackend], Any], *, standby: bool
    ) -> LocalRead | None:
        if self.table[task].active == self.me:
            return LocalRead(read(self.state[task]), "active", 0)
        if standby and self.me in self.table[task].standbys:
            return LocalRead(read(self.state[task]), "standby", 3)
        return None

    def lags(self) -> dict[str, dict[str, Any]]:
        return {}


class Pair:
    """w0's `StoreQueries`, forwarding to w1's app; the forwards sent, and w1 going down."""

    def __init__(self, *, token: str | None = None, w1_token: str | None = None) -> None:
        state = backends()
        self.w0 = Instance("w0", state)
        self.w1 = Instance("w1", state)
        self.sent: list[httpx.Request] = []
        self.down = False
        w1_app = TestClient(build_app(self.w1, token=w1_token))

        def to_w1(request: httpx.Request) -> httpx.Response:
            self.sent.append(request)
            if self.down:
                raise httpx.ConnectError("connection refused", request=request)
            assert request.url.host == "w1"
            answer = w1_app.get(
                request.url.path, params=request.url.params, headers=dict(request.headers)
            )
            return httpx.Response(
                answer.status_code, headers=answer.headers, content=answer.content
            )

        forwarder = Forwarder(
            instance_id="w0",
            endpoint=self.w0.endpoint,
            token=token,
            max_forwards=4,
            transport=httpx.MockTransport(to_w1),
        )
        self.queries = StoreQueries(self.w0, token=token, forwarder=forwarder)

    def windows(self, store: str, key: str, **options: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "from_ms": None,
            "to_ms": None,
            "after": None,
            "limit": 1000,
            "stale": False,
            "prefer_local": False,
            "forwarded": False,
        }
        return self.queries.windows(store, key, **{**settings, **options})

    def all_windows(self, store: str, **options: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "from_ms": None,
            "to_ms": None,
            "after": None,
            "limit": 1000,
            "stale": False,
            "forwarded": False,
        }
        return self.queries.all_windows(store, **{**settings, **options})


def owned_by(instance: str) -> list[str]:
    keys = [k for k in KEYS if OWNERS[task_of(k)].active == instance]
    assert len(keys) >= 3, "the test needs keys on both instances"
    return keys


# -- one key -------------------------------------------------------------------------------------


def test_a_keys_windows_are_read_where_its_task_runs_by_start_in_the_range() -> None:
    pair = Pair()
    key = owned_by("w0")[-1]
    answer = pair.windows("per-minute", key, from_ms=MINUTE, to_ms=2 * MINUTE)
    assert not pair.sent
    starts = [s for s, _ in expected_minutes(key) if MINUTE <= s <= 2 * MINUTE]
    assert len(starts) == 2, "both bounds are inclusive"
    assert answer["windows"] == [
        {
            "key": key,
            "start_ms": s,
            "end_ms": s + MINUTE,
            "value": str(s // MINUTE + 1),
            "timestamp_ms": s + 59_999,
        }
        for s in starts
    ]
    assert answer["from_ms"] == MINUTE and answer["to_ms"] == 2 * MINUTE
    task = task_of(key)
    assert {k: answer[k] for k in ("task", "partition", "answered_by", "role", "stale")} == {
        "task": str(task),
        "partition": task.partition,
        "answered_by": "w0",
        "role": "active",
        "stale": False,
    }
    assert answer["next"] is None


def test_a_keys_windows_owned_elsewhere_are_forwarded_once_with_the_token() -> None:
    pair = Pair(token=TOKEN, w1_token=TOKEN)
    key = owned_by("w1")[-1]
    answer = pair.windows("per-minute", key)
    assert [(w["start_ms"], int(w["value"])) for w in answer["windows"]] == expected_minutes(key)
    assert answer["answered_by"] == "w1" and answer["role"] == "active"
    (forward,) = pair.sent
    assert forward.url.path == "/v1/stores/per-minute/raw-windows"
    assert forward.headers["authorization"] == f"Bearer {TOKEN}"
    assert forward.url.params["tasks"] == str(task_of(key))


def test_a_forward_without_the_token_is_refused_by_the_owner() -> None:
    pair = Pair(token=None, w1_token=TOKEN)
    with pytest.raises(Unavailable, match="answered 401"):
        pair.windows("per-minute", owned_by("w1")[0])


def test_a_key_without_windows_in_the_range_is_an_empty_list() -> None:
    pair = Pair()
    assert pair.windows("per-minute", "nobody")["windows"] == []
    assert pair.windows("per-minute", KEYS[0], from_ms=MINUTE)["windows"] == []


def test_a_keys_sessions_are_those_overlapping_the_range() -> None:
    pair = Pair()
    key = owned_by("w1")[0]
    answer = pair.windows("sessions", key, from_ms=100, to_ms=5000)
    assert [(w["start_ms"], w["end_ms"], w["value"]) for w in answer["windows"]] == [
        (0, 100, {"clicks": 100}),
        (1000, 1000, {"clicks": 0}),
        (5000, 9000, {"clicks": 4000}),
    ]
    answer = pair.windows("sessions", key, from_ms=101, to_ms=4999)
    assert [w["start_ms"] for w in answer["windows"]] == [1000]


def test_a_keys_windows_page_with_a_cursor() -> None:
    pair = Pair()
    key = KEYS[-1]
    first = pair.windows("per-minute", key, limit=5)
    assert len(first["windows"]) == 5 and first["next"] is not None
    rest = pair.windows("per-minute", key, after=first["next"])
    assert rest["next"] is None
    starts = [w["start_ms"] for w in first["windows"] + rest["windows"]]
    assert starts == [s for s, _ in expected_minutes(key)]


def test_with_the_owner_down_a_standby_answers_only_with_stale() -> None:
    pair = Pair()
    pair.down = True
    key = owned_by("w1")[0]
    with pytest.raises(Unavailable, match="pass stale=true"):
        pair.windows("per-minute", key)
    answer = pair.windows("per-minute", key, stale=True)
    assert (answer["answered_by"], answer["role"], answer["stale"], answer["lag"]) == (
        "w0",
        "standby",
        True,
        3,
    )
    assert [(w["start_ms"], int(w["value"])) for w in answer["windows"]] == expected_minutes(key)


def test_a_forwarded_request_is_never_forwarded_again() -> None:
    pair = Pair()
    with pytest.raises(Unavailable, match="instance w0 holds no readable copy"):
        pair.windows("per-minute", owned_by("w1")[0], forwarded=True)
    assert not pair.sent


# -- every key -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_every_keys_windows_fan_out_and_page_each_once_in_stored_order(limit: int) -> None:
    pair = Pair()
    got: list[tuple[str, int, str]] = []
    after = None
    answered: set[str] = set()
    for _ in range(200):
        page = pair.all_windows(
            "per-minute", from_ms=2 * MINUTE, to_ms=5 * MINUTE, limit=limit, after=after
        )
        assert len(page["windows"]) <= limit and page["stale"] is False
        answered |= {w["answered_by"] for w in page["tasks"].values()}
        got.extend((w["key"], w["start_ms"], w["value"]) for w in page["windows"])
        after = page["next"]
        if after is None:
            break
    expected = [
        (k, s, str(n))
        for k in sorted(KEYS, key=lambda k: (len(k), k))
        for s, n in expected_minutes(k)
        if 2 * MINUTE <= s <= 5 * MINUTE
    ]
    assert got == expected
    assert answered == {"w0", "w1"}


def test_every_keys_sessions_fan_out_with_standbys_when_stale() -> None:
    pair = Pair()
    pair.down = True
    with pytest.raises(Unavailable):
        pair.all_windows("sessions", from_ms=950, to_ms=1000)
    page = pair.all_windows("sessions", from_ms=950, to_ms=1000, stale=True)
    assert sorted(w["key"] for w in page["windows"]) == sorted(KEYS)
    assert all(w["start_ms"] == 1000 for w in page["windows"])
    assert page["stale"] is True


# -- what is refused -----------------------------------------------------------------------------


def test_key_value_reads_of_a_windowed_store_point_to_the_windows_endpoints() -> None:
    queries = Pair().queries
    calls: list[Callable[[], Any]] = [
        lambda: queries.get("per-minute", "k", stale=False, prefer_local=False, forwarded=False),
        lambda: queries.get_many(
            "sessions", ["k"], stale=False, prefer_local=False, forwarded=False
        ),
        lambda: queries.entries(
            "per-minute",
            start=None,
            end=None,
            prefix=None,
            after=None,
            limit=10,
            stale=False,
            local_only=False,
            tasks=None,
        ),
    ]
    for call in calls:
        with pytest.raises(HTTPException) as refused:
            call()
        assert refused.value.status_code == 400
        assert "GET /v1/stores/" in refused.value.detail
        assert "/windows/{key}?from_ms=&to_ms=" in refused.value.detail


def test_windows_of_a_key_value_store_point_to_the_key_value_endpoints() -> None:
    pair = Pair()
    for call in (
        lambda: pair.windows("counts", "k"),
        lambda: pair.all_windows("counts"),
    ):
        with pytest.raises(HTTPException) as refused:
            call()
        assert refused.value.status_code == 400
        assert refused.value.detail == (
            "store 'counts' is a key-value store and holds no windows: read it with "
            "GET /v1/stores/counts/keys/{key} or GET /v1/stores/counts/entries"
        )


def test_a_time_range_that_is_not_one_is_a_400() -> None:
    pair = Pair()
    with pytest.raises(HTTPException) as refused:
        pair.windows("per-minute", "k", from_ms=10, to_ms=9)
    assert refused.value.status_code == 400
    assert "0 <= from_ms <= to_ms" in refused.value.detail


def test_the_listing_says_each_stores_kind() -> None:
    listing = Pair().queries.stores()["stores"]
    assert {s["name"]: s["kind"] for s in listing} == {
        "counts": "key_value",
        "per-minute": "window",
        "sessions": "session",
    }


def test_the_openapi_document_describes_the_windows_endpoints() -> None:
    document = build_app(Instance("w0", {}), token=None).openapi()
    one = document["paths"]["/v1/stores/{store}/windows/{key}"]["get"]
    every = document["paths"]["/v1/stores/{store}/windows"]["get"]
    for operation in (one, every):
        assert "START is in the range" in operation["description"]
        assert "sessions overlapping it" in operation["description"]
        names = {p["name"] for p in operation["parameters"]}
        assert {"from_ms", "to_ms", "after", "limit", "stale"} <= names
    assert "/v1/stores/{store}/raw-windows" not in document["paths"]
