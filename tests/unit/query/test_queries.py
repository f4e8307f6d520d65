"""`StoreQueries` without HTTP: a store and a key from their text, where a key lives, reads
routed to the owner through the forwarder, ranges from `from`/`to`/`prefix`/`after`; and the
app `build_app` assembles from it (the OpenAPI document's operations and bearer scheme)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import HTTPException

from processor.ids import TaskId
from processor.query.forwarding import FORWARDED, Forwarder, Unavailable
from processor.query.limits import MAX_KEYS, Overloaded, QueryLimits
from processor.query.partitioner import partition_for
from processor.query.queries import StoreQueries, key_range
from processor.query.server import build_app
from processor.query.source import Owners, StoreInfo
from processor.serdes import IntSerde
from processor.state.memory import InMemoryBackend
from processor.topology.graph import StoreSpec
from tests.unit.query.test_reads import INFO, STORE, TASKS, Source

Handler = Callable[[httpx.Request], httpx.Response]
KEYS = [f"k-{i}" for i in range(6)]
ONE = (1).to_bytes(8, "big")


def queries(
    owners: dict[TaskId, Owners], handler: Handler | None = None
) -> tuple[StoreQueries, list[httpx.Request]]:
    """StoreQueries for instance w0 of `Source`, holding the tasks it owns with their part of
    `KEYS` (each with the value 1), forwarding through `handler`; and the forwards it sent."""
    sent: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request) if handler else httpx.Response(500)

    backends = {t: InMemoryBackend([STORE]) for t in TASKS if owners[t].active == "w0"}
    for key in KEYS:
        if (backend := backends.get(task_of(key))) is not None:
            backend.write({STORE: [(key.encode(), ONE)]}, {})
    source = Source(owners, backends)
    forwarder = Forwarder(
        instance_id="w0",
        endpoint=source.endpoint,
        token=None,
        max_forwards=4,
        transport=httpx.MockTransport(recording),
    )
    return StoreQueries(source, token=None, forwarder=forwarder), sent


def everything_on(instance: str) -> dict[TaskId, Owners]:
    return {t: Owners(instance, ()) for t in TASKS}


def task_of(text: str) -> TaskId:
    return TaskId(0, partition_for(text.encode(), len(TASKS)))


# -- stores, keys and tasks ----------------------------------------------------------------------


def test_an_unknown_store_is_a_404_naming_the_stores() -> None:
    store_queries, _ = queries(everything_on("w0"))
    assert store_queries.store(STORE) is INFO
    with pytest.raises(HTTPException) as caught:
        store_queries.store("nope")
    assert (caught.value.status_code, caught.value.detail) == (
        404,
        "no store 'nope'; stores: counts",
    )


def test_a_key_that_cannot_be_one_of_the_stores_is_a_400() -> None:
    by_id = StoreInfo(StoreSpec("by-id", IntSerde(), IntSerde()), 1, 3)
    assert StoreQueries.key_bytes(by_id, " 7 ") == IntSerde().serialize(7)
    with pytest.raises(HTTPException) as caught:
        StoreQueries.key_bytes(by_id, "x")
    assert caught.value.status_code == 400
    assert caught.value.detail == "key: 'x' is not an integer (the store's keys are ints)"


def test_tasks_must_be_the_stores() -> None:
    assert StoreQueries.tasks_of(INFO, STORE, "0_3,0_1,0_3") == [TaskId(0, 1), TaskId(0, 3)]
    for listing in ("0_6", "1_0"):
        with pytest.raises(HTTPException) as caught:
            StoreQueries.tasks_of(INFO, STORE, listing)
        assert caught.value.status_code == 400
        assert caught.value.detail == f"task {listing} holds no part of store 'counts'"


def test_key_metadata_names_the_task_its_owners_and_the_active_endpoint() -> None:
    owners = {t: Owners("w1", ("w2",)) for t in TASKS}
    store_queries, sent = queries(owners)
    task = task_of("k")
    assert store_queries.key_metadata(STORE, "k") == {
        "store": STORE,
        "partition": task.partition,
        "task": str(task),
        "active": "w1",
        "active_endpoint": "http://w1",
        "standbys": ["w2"],
    }
    assert not sent


def test_the_listing_metadata_and_lag() -> None:
    store_queries, _ = queries(everything_on("w0"))
    assert store_queries.stores() == {
        "instance": "w0",
        "stores": [
            {
                "name": STORE,
                "kind": "key_value",
                "partitions": 6,
                "key_format": "text",
                "value_format": "text",
            }
        ],
    }
    assert store_queries.metadata() == {"instance": "w0", "instances": {}}
    assert store_queries.lag() == {"instance": "w0", "tasks": {}}


def test_every_request_gets_the_configured_time() -> None:
    source = Source(everything_on("w0"), {})
    store_queries = StoreQueries(source, token=None, limits=QueryLimits(timeout_s=0.5))
    assert store_queries.deadline().seconds == 0.5
    assert store_queries.forwarder.gate.limit == QueryLimits().max_forwards


# -- reads of keys -------------------------------------------------------------------------------


def test_a_key_held_here_is_read_here() -> None:
    store_queries, sent = queries(everything_on("w0"))
    result = store_queries.get(STORE, "k-0", stale=False, prefer_local=False, forwarded=False)
    assert result["value"] == "1" and result["task"] == str(task_of("k-0"))
    assert result["answered_by"] == "w0" and result["role"] == "active"
    assert not sent


def test_an_absent_key_is_a_404_naming_its_task_and_who_answered() -> None:
    store_queries, _ = queries(everything_on("w0"))
    with pytest.raises(HTTPException) as caught:
        store_queries.get(STORE, "nobody", stale=False, prefer_local=False, forwarded=False)
    assert caught.value.status_code == 404
    assert caught.value.detail == (
        f"key 'nobody' is not in store 'counts' (task {task_of('nobody')}, answered by w0)"
    )


def test_a_key_owned_elsewhere_is_forwarded_once_to_its_owner() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        keys = json.loads(request.content)["keys"]
        return httpx.Response(
            200, json={"results": [{"key": k, "found": True, "answered_by": "w1"} for k in keys]}
        )

    store_queries, sent = queries(everything_on("w1"), answer)
    result = store_queries.get(STORE, "k", stale=False, prefer_local=False, forwarded=False)
    assert result == {"key": "k", "found": True, "answered_by": "w1"}
    (forward,) = sent
    assert str(forward.url) == "http://w1/v1/stores/counts/keys"
    assert forward.headers[FORWARDED] == "w0"
    assert json.loads(forward.content) == {"keys": ["k"], "stale": False}


def test_a_forwarded_request_is_never_forwarded_again() -> None:
    store_queries, sent = queries(everything_on("w1"))
    with pytest.raises(Unavailable, match="instance w0 holds no readable copy"):
        store_queries.get(STORE, "k", stale=False, prefer_local=False, forwarded=True)
    assert not sent


def test_more_keys_than_a_batch_is_refused_before_anything_is_read() -> None:
    store_queries, sent = queries(everything_on("w1"))
    with pytest.raises(Overloaded) as refused:
        store_queries.get_many(
            "nope", ["k"] * (MAX_KEYS + 1), stale=False, prefer_local=False, forwarded=False
        )
    assert (refused.value.status, refused.value.limit) == (413, "max_keys")
    assert f"{MAX_KEYS + 1} keys in one request" in refused.value.detail
    assert not sent


def test_many_keys_answer_in_order_absent_ones_included() -> None:
    store_queries, _ = queries(everything_on("w0"))
    answer = store_queries.get_many(
        STORE, ["k-2", "nobody", "k-0"], stale=False, prefer_local=False, forwarded=False
    )
    assert [(r["key"], r["found"]) for r in answer["results"]] == [
        ("k-2", True),
        ("nobody", False),
        ("k-0", True),
    ]


# -- ranges --------------------------------------------------------------------------------------


def test_a_key_range_from_bounds_a_prefix_and_a_cursor() -> None:
    assert key_range(None, None, None, None) == (None, None)
    assert key_range(b"b", b"x", None, None) == (b"b", b"x")
    assert key_range(None, None, b"ab", None) == (b"ab", b"ac")
    assert key_range(None, None, b"a\xff\xff", None) == (b"a\xff\xff", b"b")
    assert key_range(None, None, b"\xff", None) == (b"\xff", None)
    assert key_range(b"abc", b"zz", b"ab", None) == (b"abc", b"ac")
    assert key_range(b"a", b"ab5", b"ab", None) == (b"ab", b"ab5")
    assert key_range(b"a", None, None, b"k") == (b"k\x00", None)
    assert key_range(b"m", None, None, b"k") == (b"m", None)


def test_entries_page_in_key_order_with_a_cursor_when_full() -> None:
    store_queries, _ = queries(everything_on("w0"))

    def page(**options: Any) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "start": None,
            "end": None,
            "prefix": None,
            "after": None,
            "limit": 2,
            "stale": False,
            "local_only": False,
            "tasks": None,
        }
        return store_queries.entries(STORE, **{**settings, **options})

    first = page()
    assert first["entries"] == [{"key": "k-0", "value": "1"}, {"key": "k-1", "value": "1"}]
    assert first["next"] == b"k-1".hex() and first["stale"] is False
    last = page(after=first["next"], limit=10)
    assert [e["key"] for e in last["entries"]] == [f"k-{p}" for p in range(2, 6)]
    assert last["next"] is None
    local = page(local_only=True, tasks="0_4,0_1", limit=10)
    expected = [k for k in KEYS if task_of(k).partition in (1, 4)]
    assert len(expected) > 1
    assert [e["key"] for e in local["entries"]] == expected
    assert set(local["tasks"]) == {"0_1", "0_4"}


def test_raw_entries_are_this_instances_part_as_hex() -> None:
    store_queries, _ = queries(everything_on("w0"))
    answer = store_queries.raw_entries(
        STORE, tasks="0_4,0_2", low=b"k-2".hex(), high=None, limit=10, stale=False
    )
    expected = [k for k in KEYS if k >= "k-2" and task_of(k).partition in (2, 4)]
    assert len(expected) > 1
    assert answer["entries"] == [(k.encode().hex(), ONE.hex()) for k in expected]
    assert answer["tasks"] == {
        "0_2": {"answered_by": "w0", "role": "active", "lag": 0},
        "0_4": {"answered_by": "w0", "role": "active", "lag": 0},
    }


# -- the app -------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "t"])
def test_the_openapi_document_lists_the_operations_and_says_when_a_token_is_needed(
    token: str | None,
) -> None:
    document = build_app(Source(everything_on("w0"), {}), token=token).openapi()
    operations = {
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
    }
    assert operations == {
        "GET /v1/stores",
        "GET /v1/stores/{store}/keys/{key}",
        "POST /v1/stores/{store}/keys",
        "GET /v1/stores/{store}/entries",
        "GET /v1/stores/{store}/windows/{key}",
        "GET /v1/stores/{store}/windows",
        "GET /v1/metadata",
        "GET /v1/metadata/stores/{store}/keys/{key}",
        "GET /v1/lag",
    }
    assert ("security" in document) is (token is not None)
    if token is not None:
        assert document["components"]["securitySchemes"]["bearer"] == {
            "type": "http",
            "scheme": "bearer",
        }
