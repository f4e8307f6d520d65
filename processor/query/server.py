"""The HTTP API every worker serves: its stores' contents (one key, many keys, ranges and whole
stores with paging), where each key lives, lag per task, and Prometheus `/metrics`.

Routing. A key goes to the partition Kafka's default partitioner gives its serialized key, so
to the task producers write it to. The instance that holds the task's active copy answers; any
other instance forwards the request there, once (a forwarded request is answered where it
lands, never forwarded again), and the response names the instance that answered. Range and
whole-store reads fan out: each task is read on its active instance (`scope=local` with the
tasks to read) and the parts are merged in key order, each key once. Paging continues after
the last key of the previous page (`after`, the serialized key in hex), which stays correct
across instances because every part is sorted by the same bytes.

Standby reads (`stale=true`). When the active copy cannot answer (its instance is down, the
task is moving) a standby answers instead, locally when this worker holds one, and the response
says it is stale and how many changelog records it is behind. `prefer_local=true` reads a local
copy first even when the active one could answer.

Bounds. One request makes at most one forward per instance and step, all within one deadline,
and a worker serves a bounded number of reads and forwards at once; a request over a bound is
refused at once with 503 (413 for too many keys), a `Retry-After` header and a JSON body naming
the limit (`processor.query.limits`).

Security. With a token configured every endpoint, `/metrics` and the OpenAPI document
included, requires `Authorization: Bearer <token>`. Bad requests get a 4xx with a message.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Annotated, Any

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, make_asgi_app
from pydantic import BaseModel, Field
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from processor.errors import ConfigError
from processor.ids import TaskId
from processor.query.forwarding import FORWARDED, Forwarder, Unavailable
from processor.query.guard import Guard
from processor.query.limits import (
    MAX_KEYS,
    RETRY_UNAVAILABLE_S,
    Deadline,
    Gate,
    Overloaded,
    QueryLimits,
)
from processor.query.partitioner import partition_for
from processor.query.reads import StoreReads
from processor.query.render import KeyFormatError, format_name, parse_key, render
from processor.query.source import QuerySource, StoreInfo

__all__ = ["QueryServer", "build_app"]

log = logging.getLogger("processor.query")

MAX_LIMIT = 10_000
# A request line and headers must fit uvicorn's limit for an incomplete request head; these
# bounds keep the longest valid URL (three keys of 4-byte characters, percent-encoded, and a
# cursor) within it.
MAX_KEY_CHARS = 1024
MAX_CURSOR_CHARS = 2 * 4 * MAX_KEY_CHARS
MAX_TASKS_CHARS = 10_000
MAX_REQUEST_HEAD_BYTES = 128 * 1024


# What reads answer besides 200 (processor.query.limits), for the OpenAPI document.
_BOUNDED: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "over a bound (`limit` names it), or no copy can answer now; "
        "retry after the Retry-After header's seconds"
    }
}


class KeysRequest(BaseModel):
    # The key cap is checked by the handler, so that it is a 413 naming the limit.
    keys: list[Annotated[str, Field(max_length=MAX_KEY_CHARS)]] = Field(
        description=f"keys as text (see /v1/stores), at most {MAX_KEYS}"
    )
    stale: bool = False


def build_app(
    source: QuerySource,
    *,
    token: str | None,
    registry: CollectorRegistry | None = None,
    limits: QueryLimits | None = None,
) -> FastAPI:
    limits = limits or QueryLimits()
    app = FastAPI(
        title="processor queryable state",
        version="1",
        description=(__doc__ or "").split("\n\n", 1)[1],
    )
    forwarder = Forwarder(
        instance_id=source.instance_id,
        endpoint=source.endpoint,
        token=token,
        max_forwards=limits.max_forwards,
    )
    reads = StoreReads(source, forwarder)
    app.add_middleware(
        Guard,
        token=token,
        gate=Gate(
            limits.max_requests, setting="query_max_requests", what="reads of store contents"
        ),
    )

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, e: Overloaded) -> Response:
        return e.response()

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, e: Unavailable) -> Response:
        return JSONResponse(
            {"detail": e.message, "retry_after_s": RETRY_UNAVAILABLE_S},
            status_code=503,
            headers={"retry-after": str(RETRY_UNAVAILABLE_S)},
        )

    if registry is not None:
        metrics = make_asgi_app(registry)
        # At /metrics itself, not only under the mount: a scrape of /metrics was a redirect to
        # /metrics/ first, two requests where one does.
        app.router.routes.append(Route("/metrics", _Asgi(metrics), include_in_schema=False))
        app.mount("/metrics", metrics)

    if token is not None:
        plain_openapi = app.openapi

        def openapi_with_bearer() -> dict[str, Any]:
            document = plain_openapi()
            schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            document["security"] = [{"bearer": []}]
            return document

        app.openapi = openapi_with_bearer  # type: ignore[method-assign]

    def store_info(store: str) -> StoreInfo:
        info = source.stores().get(store)
        if info is None:
            names = ", ".join(sorted(source.stores())) or "none"
            raise HTTPException(404, f"no store {store!r}; stores: {names}")
        return info

    def key_bytes(info: StoreInfo, text: str) -> bytes:
        try:
            return parse_key(info.spec.key_serde, text)
        except KeyFormatError as e:
            raise HTTPException(400, f"key: {e}") from None

    def task_of(info: StoreInfo, key: bytes) -> TaskId:
        return TaskId(info.subtopology, partition_for(key, info.partitions))

    @app.get("/v1/stores", summary="The stores of this application")
    async def stores() -> dict[str, Any]:
        # async: an in-memory listing needs no thread, so it answers however busy the threads are
        return {
            "instance": source.instance_id,
            "stores": [
                {
                    "name": name,
                    "partitions": info.partitions,
                    "key_format": format_name(info.spec.key_serde),
                    "value_format": format_name(info.spec.value_serde),
                }
                for name, info in sorted(source.stores().items())
            ],
        }

    @app.get(
        "/v1/stores/{store}/keys/{key:path}",
        summary="One key's value",
        response_model=None,
        responses=_BOUNDED,
    )
    def get_key(
        request: Request,
        store: Annotated[str, Path(max_length=249)],
        key: Annotated[str, Path(max_length=MAX_KEY_CHARS)],
        stale: bool = False,
        prefer_local: bool = False,
    ) -> Response:
        info = store_info(store)
        (result,) = reads.keys(
            store,
            info,
            [(key, key_bytes(info, key))],
            stale=stale,
            prefer_local=prefer_local,
            forwarded=FORWARDED in request.headers,
            deadline=Deadline(limits.timeout_s),
        )
        if not result["found"]:
            raise HTTPException(
                404,
                f"key {key!r} is not in store {store!r} "
                f"(task {result['task']}, answered by {result['answered_by']})",
            )
        return _json(result)

    @app.post(
        "/v1/stores/{store}/keys",
        summary="Many keys' values, each routed to its owner",
        response_model=None,
        responses={**_BOUNDED, 413: {"description": f"more than {MAX_KEYS} keys"}},
    )
    def get_keys(
        request: Request,
        store: Annotated[str, Path(max_length=249)],
        body: Annotated[KeysRequest, Body()],
        prefer_local: bool = False,
    ) -> Response:
        if len(body.keys) > MAX_KEYS:
            raise Overloaded(
                f"{len(body.keys)} keys in one request; the query API takes at most {MAX_KEYS}: "
                f"send them in batches of {MAX_KEYS} (QueryClient.get_many does)",
                limit="max_keys",
                status=413,
            )
        info = store_info(store)
        results = reads.keys(
            store,
            info,
            [(text, key_bytes(info, text)) for text in body.keys],
            stale=body.stale,
            prefer_local=prefer_local,
            forwarded=FORWARDED in request.headers,
            deadline=Deadline(limits.timeout_s),
        )
        return _json({"results": results})

    @app.get(
        "/v1/stores/{store}/entries",
        summary="Entries in key order, a page at a time",
        response_model=None,
        responses=_BOUNDED,
    )
    def entries(
        request: Request,
        store: Annotated[str, Path(max_length=249)],
        start: Annotated[str | None, Query(alias="from", max_length=MAX_KEY_CHARS)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=MAX_KEY_CHARS)] = None,
        prefix: Annotated[str | None, Query(max_length=MAX_KEY_CHARS)] = None,
        after: Annotated[
            str | None, Query(max_length=MAX_CURSOR_CHARS, pattern="^([0-9a-fA-F]{2})*$")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
        stale: bool = False,
        scope: Annotated[str, Query(pattern="^(all|local)$")] = "all",
        tasks: Annotated[
            str | None,
            Query(max_length=MAX_TASKS_CHARS, pattern=r"^[0-9]+_[0-9]+(,[0-9]+_[0-9]+)*$"),
        ] = None,
    ) -> Response:
        info = store_info(store)
        low = key_bytes(info, start) if start is not None else None
        high = key_bytes(info, end) if end is not None else None
        if prefix is not None:
            raw_prefix = key_bytes(info, prefix)
            low = max(low, raw_prefix) if low is not None else raw_prefix
            successor = _successor(raw_prefix)
            high = (
                min(high, successor)
                if high is not None and successor is not None
                else (high if successor is None else successor)
            )
        if after is not None:
            resume = bytes.fromhex(after) + b"\x00"
            low = max(low, resume) if low is not None else resume
        local_only = scope == "local" or FORWARDED in request.headers
        wanted = (
            tasks_of_store(info, store, tasks)
            if tasks and local_only
            else [TaskId(info.subtopology, p) for p in range(info.partitions)]
        )
        merged, where = reads.entries(
            store,
            info,
            wanted,
            low,
            high,
            limit,
            stale=stale,
            local_only=local_only,
            deadline=Deadline(limits.timeout_s),
        )
        return _json(
            {
                "entries": [
                    {
                        "key": render(info.spec.key_serde, k),
                        "value": render(info.spec.value_serde, v),
                    }
                    for k, v in merged
                ],
                "next": merged[-1][0].hex() if len(merged) == limit else None,
                "tasks": where,
                "stale": any(w["role"] != "active" for w in where.values()),
            }
        )

    def tasks_of_store(info: StoreInfo, store: str, listing: str) -> list[TaskId]:
        """The distinct tasks of a `tasks` parameter ("0_1,0_4"), each one of the store's."""
        wanted = sorted({TaskId.parse(t) for t in listing.split(",")})
        for task in wanted:
            if task.subtopology != info.subtopology or not 0 <= task.partition < info.partitions:
                raise HTTPException(400, f"task {task} holds no part of store {store!r}")
        return wanted

    @app.get("/v1/stores/{store}/raw-entries", include_in_schema=False, response_model=None)
    def raw_entries(
        store: Annotated[str, Path(max_length=249)],
        tasks: Annotated[
            str, Query(max_length=MAX_TASKS_CHARS, pattern=r"^[0-9]+_[0-9]+(,[0-9]+_[0-9]+)*$")
        ],
        low: Annotated[
            str | None, Query(max_length=MAX_CURSOR_CHARS, pattern="^([0-9a-fA-F]{2})*$")
        ] = None,
        high: Annotated[
            str | None, Query(max_length=MAX_CURSOR_CHARS, pattern="^([0-9a-fA-F]{2})*$")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 1000,
        stale: bool = False,
    ) -> Response:
        """The part of one instance in a fan-out, as hex bytes (internal)."""
        info = store_info(store)
        entries_, where = reads.entries(
            store,
            info,
            tasks_of_store(info, store, tasks),
            bytes.fromhex(low) if low is not None else None,
            bytes.fromhex(high) if high is not None else None,
            limit,
            stale=stale,
            local_only=True,
            deadline=Deadline(limits.timeout_s),
        )
        return _json({"entries": [(k.hex(), v.hex()) for k, v in entries_], "tasks": where})

    @app.get("/v1/metadata", summary="Instances, their endpoints and their tasks")
    def metadata() -> dict[str, Any]:
        return {"instance": source.instance_id, "instances": source.instances()}

    @app.get("/v1/metadata/stores/{store}/keys/{key:path}", summary="Where one key lives")
    def key_metadata(
        store: Annotated[str, Path(max_length=249)],
        key: Annotated[str, Path(max_length=MAX_KEY_CHARS)],
    ) -> dict[str, Any]:
        info = store_info(store)
        task = task_of(info, key_bytes(info, key))
        owners = source.owners(task)
        return {
            "store": store,
            "partition": task.partition,
            "task": str(task),
            "active": owners.active,
            "active_endpoint": source.endpoint(owners.active) if owners.active else None,
            "standbys": list(owners.standbys),
        }

    @app.get("/v1/lag", summary="Changelog records behind, per task held here")
    def lag() -> dict[str, Any]:
        return {"instance": source.instance_id, "tasks": source.lags()}

    return app


def _json(content: Any) -> Response:
    """`content` as a JSON response, encoded on the request's own thread: left to FastAPI, a
    large answer would be serialized on the event loop, where it delays every other request."""
    return Response(
        json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(),
        media_type="application/json",
    )


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: none)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


class _Asgi:
    """An ASGI app that Starlette's `Route` takes for one (it wraps plain functions as request
    handlers)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


class QueryServer:
    """Serves `app` with uvicorn on a thread of its own."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets it knows are TCP, and
        # without it every answer waited for a delayed ACK (44 ms instead of 2 ms a request).
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._socket.bind((host, port))
        except OSError as e:
            self._socket.close()
            raise ConfigError(
                "http_port",
                f"cannot serve HTTP on {host}:{port}: {e.strerror or e}; choose another port",
            ) from e
        # Listening now: the port is published before the server thread is up.
        self._socket.listen(2048)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="processor-http",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
