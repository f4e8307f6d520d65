"""The query API's endpoints, added to an app by `add_routes` (`processor.query.server.build_app`):
each parses its request, calls one method of the app's `StoreQueries` (`app.state.queries`) and
renders the answer. Also the answers to `Overloaded` and `Unavailable` (`overloaded`,
`unavailable`), whichever part of a request raised them.

The handlers' names, signatures and the absence of docstrings are part of the OpenAPI
document (operation ids, parameters, descriptions): change them and the document changes.
Reads of store contents are plain functions, run on the server's threads; the store listing is
`async`, answered on the event loop however busy the threads are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from processor.query.forwarding import FORWARDED, Unavailable
from processor.query.limits import MAX_KEYS, RETRY_UNAVAILABLE_S, Overloaded
from processor.query.queries import StoreQueries
from processor.query.windows import MAX_SCANNED, MAX_TIME_MS

__all__ = [
    "MAX_CURSOR_CHARS",
    "MAX_KEY_CHARS",
    "MAX_LIMIT",
    "MAX_TASKS_CHARS",
    "KeysRequest",
    "add_routes",
    "overloaded",
    "unavailable",
]

MAX_LIMIT = 10_000
# A request line and headers must fit uvicorn's limit for an incomplete request head
# (processor.query.server.MAX_REQUEST_HEAD_BYTES); these bounds keep the longest valid URL
# (three keys of 4-byte characters, percent-encoded, and a cursor) within it.
MAX_KEY_CHARS = 1024
MAX_CURSOR_CHARS = 2 * 4 * MAX_KEY_CHARS
MAX_TASKS_CHARS = 10_000

# What reads answer besides 200 (processor.query.limits), for the OpenAPI document.
_BOUNDED: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "over a bound (`limit` names it), or no copy can answer now; "
        "retry after the Retry-After header's seconds"
    }
}

Store = Annotated[str, Path(max_length=249)]
Key = Annotated[str, Path(max_length=MAX_KEY_CHARS)]
Hex = Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, pattern="^([0-9a-fA-F]{2})*$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
_TASKS = r"^[0-9]+_[0-9]+(,[0-9]+_[0-9]+)*$"


class KeysRequest(BaseModel):
    # The key cap is checked by StoreQueries.get_many, so that it is a 413 naming the limit.
    keys: list[Annotated[str, Field(max_length=MAX_KEY_CHARS)]] = Field(
        description=f"keys as text (see /v1/stores), at most {MAX_KEYS}"
    )
    stale: bool = False


async def _queries(request: Request) -> StoreQueries:
    # async: resolved on the event loop, so that the async listing never waits for a thread
    queries: StoreQueries = request.app.state.queries
    return queries


Queries = Annotated[StoreQueries, Depends(_queries)]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
_ROUTES: list[tuple[str, Callable[..., Any], dict[str, Any]]] = []
"""Every endpoint with its path and options for `FastAPI.add_api_route`, in declaration order
(the OpenAPI document's): filled by `_route` as this module is imported, never after."""


def _route(method: str, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    def declare(endpoint: Endpoint) -> Endpoint:
        _ROUTES.append((path, endpoint, {"methods": [method], **options}))
        return endpoint

    return declare


def add_routes(app: FastAPI) -> None:
    """Add every endpoint to `app`, as `@app.get` and `@app.post` would. (Not an `APIRouter`:
    FastAPI includes one as a router of its own, one more layer for every request to cross.)"""
    for path, endpoint, options in _ROUTES:
        app.add_api_route(path, endpoint, **options)


@_route("GET", "/v1/stores", summary="The stores of this application")
async def stores(queries: Queries) -> dict[str, Any]:
    return queries.stores()


@_route(
    "GET",
    "/v1/stores/{store}/keys/{key:path}",
    summary="One key's value",
    response_model=None,
    responses=_BOUNDED,
)
def get_key(
    request: Request,
    queries: Queries,
    store: Store,
    key: Key,
    stale: bool = False,
    prefer_local: bool = False,
) -> Response:
    forwarded = FORWARDED in request.headers
    return _json(
        queries.get(store, key, stale=stale, prefer_local=prefer_local, forwarded=forwarded)
    )


@_route(
    "POST",
    "/v1/stores/{store}/keys",
    summary="Many keys' values, each routed to its owner",
    response_model=None,
    responses={**_BOUNDED, 413: {"description": f"more than {MAX_KEYS} keys"}},
)
def get_keys(
    request: Request,
    queries: Queries,
    store: Store,
    body: Annotated[KeysRequest, Body()],
    prefer_local: bool = False,
) -> Response:
    return _json(
        queries.get_many(
            store,
            body.keys,
            stale=body.stale,
            prefer_local=prefer_local,
            forwarded=FORWARDED in request.headers,
        )
    )


@_route(
    "GET",
    "/v1/stores/{store}/entries",
    summary="Entries in key order, a page at a time",
    response_model=None,
    responses=_BOUNDED,
)
def entries(
    request: Request,
    queries: Queries,
    store: Store,
    start: Annotated[str | None, Query(alias="from", max_length=MAX_KEY_CHARS)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=MAX_KEY_CHARS)] = None,
    prefix: Annotated[str | None, Query(max_length=MAX_KEY_CHARS)] = None,
    after: Hex = None,
    limit: Limit = 1000,
    stale: bool = False,
    scope: Annotated[str, Query(pattern="^(all|local)$")] = "all",
    tasks: Annotated[str | None, Query(max_length=MAX_TASKS_CHARS, pattern=_TASKS)] = None,
) -> Response:
    return _json(
        queries.entries(
            store,
            start=start,
            end=end,
            prefix=prefix,
            after=after,
            limit=limit,
            stale=stale,
            local_only=scope == "local" or FORWARDED in request.headers,
            tasks=tasks,
        )
    )


@_route("GET", "/v1/stores/{store}/raw-entries", include_in_schema=False, response_model=None)
def raw_entries(
    queries: Queries,
    store: Store,
    tasks: Annotated[str, Query(max_length=MAX_TASKS_CHARS, pattern=_TASKS)],
    low: Hex = None,
    high: Hex = None,
    limit: Limit = 1000,
    stale: bool = False,
) -> Response:
    """The part of one instance in a fan-out, as hex bytes (internal)."""
    return _json(
        queries.raw_entries(store, tasks=tasks, low=low, high=high, limit=limit, stale=stale)
    )


_WINDOWS_SELECTED = (
    "The time range `[from_ms, to_ms]` is inclusive at both ends; `from_ms` defaults to 0 and "
    f"`to_ms` to {MAX_TIME_MS}. It selects, as Kafka Streams' `fetch(key, timeFrom, timeTo)` "
    "and `findSessions` do: in a window store (tumbling, hopping, sliding) the windows whose "
    "START is in the range, `from_ms <= start_ms <= to_ms`; in a session store the sessions "
    "overlapping it, `end_ms >= from_ms and start_ms <= to_ms`. Each window is `{key, start_ms, "
    "end_ms, value, timestamp_ms}`: the key and value as the store's serdes read them, "
    "`end_ms` exclusive for time windows and inclusive (the last record's timestamp) for "
    "sessions, `timestamp_ms` the largest record timestamp in the window. A page holds at most "
    "`limit` windows; `next`, when not null, is the `after` of the next page (a page may hold "
    "fewer than `limit` windows, even none, and still have a `next`: it stopped after "
    f"{MAX_SCANNED} stored windows per task). A key-value store answers 400."
)
_Time = Annotated[int | None, Query(ge=0, le=MAX_TIME_MS)]


@_route(
    "GET",
    "/v1/stores/{store}/windows/{key:path}",
    summary="One key's windows in a time range",
    description="The windows of one key, read where its task is, like a key lookup: forwarded "
    "to the instance holding the active copy, or with `stale=true` answered by a standby when "
    "the active cannot answer (`role`, `stale`, `lag` say which). A key without windows in "
    "the range answers an empty list. " + _WINDOWS_SELECTED,
    response_model=None,
    responses=_BOUNDED,
)
def get_windows(
    request: Request,
    queries: Queries,
    store: Store,
    key: Key,
    from_ms: _Time = None,
    to_ms: _Time = None,
    after: Hex = None,
    limit: Limit = 1000,
    stale: bool = False,
    prefer_local: bool = False,
) -> Response:
    return _json(
        queries.windows(
            store,
            key,
            from_ms=from_ms,
            to_ms=to_ms,
            after=after,
            limit=limit,
            stale=stale,
            prefer_local=prefer_local,
            forwarded=FORWARDED in request.headers,
        )
    )


@_route(
    "GET",
    "/v1/stores/{store}/windows",
    summary="Every key's windows in a time range, a page at a time",
    description="The windows of every key, read from every task like `/entries` (each task on "
    "its active copy, or with `stale=true` a standby when the active cannot answer), merged "
    "in stored order: by the serialized key's length, then its bytes, then start and end. "
    + _WINDOWS_SELECTED,
    response_model=None,
    responses=_BOUNDED,
)
def all_windows(
    request: Request,
    queries: Queries,
    store: Store,
    from_ms: _Time = None,
    to_ms: _Time = None,
    after: Hex = None,
    limit: Limit = 1000,
    stale: bool = False,
) -> Response:
    return _json(
        queries.all_windows(
            store,
            from_ms=from_ms,
            to_ms=to_ms,
            after=after,
            limit=limit,
            stale=stale,
            forwarded=FORWARDED in request.headers,
        )
    )


@_route("GET", "/v1/stores/{store}/raw-windows", include_in_schema=False, response_model=None)
def raw_windows(
    queries: Queries,
    store: Store,
    tasks: Annotated[str, Query(max_length=MAX_TASKS_CHARS, pattern=_TASKS)],
    from_ms: Annotated[int, Query(ge=0, le=MAX_TIME_MS)],
    to_ms: Annotated[int, Query(ge=0, le=MAX_TIME_MS)],
    low: Hex = None,
    high: Hex = None,
    limit: Limit = 1000,
    stale: bool = False,
) -> Response:
    """The part of one instance in a read of windows, as hex bytes (internal)."""
    return _json(
        queries.raw_windows(
            store,
            tasks=tasks,
            low=low,
            high=high,
            from_ms=from_ms,
            to_ms=to_ms,
            limit=limit,
            stale=stale,
        )
    )


@_route("GET", "/v1/metadata", summary="Instances, their endpoints and their tasks")
def metadata(queries: Queries) -> dict[str, Any]:
    return queries.metadata()


@_route("GET", "/v1/metadata/stores/{store}/keys/{key:path}", summary="Where one key lives")
def key_metadata(queries: Queries, store: Store, key: Key) -> dict[str, Any]:
    return queries.key_metadata(store, key)


@_route("GET", "/v1/lag", summary="Changelog records behind, per task held here")
def lag(queries: Queries) -> dict[str, Any]:
    return queries.lag()


async def overloaded(request: Request, e: Overloaded) -> Response:
    return e.response()


async def unavailable(request: Request, e: Unavailable) -> Response:
    return JSONResponse(
        {"detail": e.message, "retry_after_s": RETRY_UNAVAILABLE_S},
        status_code=503,
        headers={"retry-after": str(RETRY_UNAVAILABLE_S)},
    )


def _json(content: Any) -> Response:
    """`content` as a JSON response, encoded on the request's own thread: left to FastAPI, a
    large answer would be serialized on the event loop, where it delays every other request."""
    return Response(
        json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(),
        media_type="application/json",
    )
