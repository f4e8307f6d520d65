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

Security. With a token configured every endpoint, `/metrics` and the OpenAPI document
included, requires `Authorization: Bearer <token>`. Bad requests get a 4xx with a message.
"""

from __future__ import annotations

import heapq
import logging
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, Any

import httpx
import uvicorn
from fastapi import Body, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, make_asgi_app
from pydantic import BaseModel, Field

from processor.errors import ConfigError
from processor.ids import TaskId
from processor.query.partitioner import partition_for
from processor.query.render import KeyFormatError, format_name, parse_key, render
from processor.query.source import QuerySource, StoreInfo
from processor.state.backend import TaskStateBackend

__all__ = ["QueryServer", "build_app"]

log = logging.getLogger("processor.query")

FORWARDED = "x-processor-forwarded"
MAX_KEYS = 10_000
MAX_LIMIT = 10_000
MAX_BODY_BYTES = 1_000_000
# A request line and headers must fit uvicorn's limit for an incomplete request head; these
# bounds keep the longest valid URL (three keys of 4-byte characters, percent-encoded, and a
# cursor) within it.
MAX_KEY_CHARS = 1024
MAX_CURSOR_CHARS = 2 * 4 * MAX_KEY_CHARS
MAX_TASKS_CHARS = 10_000
MAX_REQUEST_HEAD_BYTES = 128 * 1024
_FORWARD_TIMEOUT = httpx.Timeout(10.0, connect=1.0)


class KeysRequest(BaseModel):
    keys: list[Annotated[str, Field(max_length=MAX_KEY_CHARS)]] = Field(
        max_length=MAX_KEYS, description="keys as text (see /v1/stores)"
    )
    stale: bool = False


class _Unavailable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def build_app(
    source: QuerySource, *, token: str | None, registry: CollectorRegistry | None = None
) -> FastAPI:
    app = FastAPI(
        title="processor queryable state",
        version="1",
        description=(__doc__ or "").split("\n\n", 1)[1],
    )
    client = httpx.Client(timeout=_FORWARD_TIMEOUT)
    auth_headers = {"authorization": f"Bearer {token}"} if token else {}

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if token is not None:
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return JSONResponse(
                    {
                        "detail": "missing or wrong bearer token: "
                        "send 'Authorization: Bearer <token>'"
                    },
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                {"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        return await call_next(request)

    if registry is not None:
        app.mount("/metrics", make_asgi_app(registry))

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

    def forward(instance: str, path: str, params: dict[str, Any], body: Any = None) -> Any:
        """One hop to `instance`; raises _Unavailable when it cannot answer."""
        endpoint = source.endpoint(instance)
        if endpoint is None:
            raise _Unavailable(f"instance {instance} has published no endpoint")
        headers = {**auth_headers, FORWARDED: source.instance_id}
        try:
            if body is None:
                response = client.get(endpoint + path, params=params, headers=headers)
            else:
                response = client.post(endpoint + path, params=params, json=body, headers=headers)
        except httpx.HTTPError as e:
            raise _Unavailable(f"instance {instance} at {endpoint} is unreachable: {e}") from e
        if response.status_code == 404:
            raise HTTPException(404, response.json().get("detail", "not found"))
        if response.status_code != 200:
            raise _Unavailable(
                f"instance {instance} answered {response.status_code}: {response.text[:200]}"
            )
        return response.json()

    def read(
        task: TaskId,
        reader: Callable[[TaskStateBackend], Any],
        *,
        stale: bool,
        prefer_local: bool,
        forwarded: bool,
        remote: Callable[[str, bool], tuple[Any, dict[str, Any]]],
    ) -> tuple[Any, dict[str, Any]]:
        """Read `task` where it should be read; returns (result, where: answered_by, role,
        stale, lag). `remote(instance, stale)` asks another instance for the same read."""
        me = source.instance_id
        owners = source.owners(task)

        def local(standby: bool) -> tuple[Any, dict[str, Any]] | None:
            copy = source.read_local(task, reader, standby=standby)
            if copy is None:
                return None
            where = {
                "answered_by": me,
                "role": copy.role,
                "stale": copy.role != "active",
                "lag": copy.lag,
            }
            return copy.value, where

        if forwarded or (prefer_local and stale):
            found = local(stale)
            if found is not None or forwarded:
                if found is None:
                    raise _Unavailable(f"instance {me} holds no readable copy of task {task}")
                return found
        problems: list[str] = []
        if owners.active == me:
            found = local(False)
            if found is not None:
                return found
            problems.append(f"task {task} is not running here yet (restoring)")
        elif owners.active is not None:
            try:
                return remote(owners.active, False)
            except _Unavailable as e:
                problems.append(e.message)
        else:
            problems.append(f"task {task} has no owner right now (a rebalance is under way)")
        if stale:
            found = local(True)
            if found is not None:
                return found
            for holder in owners.standbys:
                if holder == me:
                    continue
                try:
                    return remote(holder, True)
                except _Unavailable as e:
                    problems.append(e.message)
        hint = "" if stale else "; retry, or pass stale=true to read a standby copy"
        raise _Unavailable("; ".join(problems) + hint)

    def unavailable(e: _Unavailable) -> HTTPException:
        return HTTPException(503, e.message)

    @app.get("/v1/stores", summary="The stores of this application")
    def stores() -> dict[str, Any]:
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

    def get_one(
        info: StoreInfo,
        store: str,
        text: str,
        key: bytes,
        *,
        stale: bool,
        prefer_local: bool,
        forwarded: bool,
    ) -> dict[str, Any]:
        task = task_of(info, key)

        def remote(instance: str, stale_ok: bool) -> tuple[Any, dict[str, Any]]:
            answer = forward(
                instance, f"/v1/stores/{store}/keys", {}, {"keys": [text], "stale": stale_ok}
            )
            (result,) = answer["results"]
            return result, {}

        value, where = read(
            task,
            lambda backend: backend.get(store, key),
            stale=stale,
            prefer_local=prefer_local,
            forwarded=forwarded,
            remote=remote,
        )
        if not where:  # answered elsewhere: the result is complete
            return dict(value)
        return {
            "key": render(info.spec.key_serde, key),
            "found": value is not None,
            "value": render(info.spec.value_serde, value) if value is not None else None,
            "partition": task.partition,
            "task": str(task),
            **where,
        }

    @app.get("/v1/stores/{store}/keys/{key:path}", summary="One key's value")
    def get_key(
        request: Request,
        store: Annotated[str, Path(max_length=249)],
        key: Annotated[str, Path(max_length=MAX_KEY_CHARS)],
        stale: bool = False,
        prefer_local: bool = False,
    ) -> dict[str, Any]:
        info = store_info(store)
        raw = key_bytes(info, key)
        try:
            result = get_one(
                info,
                store,
                key,
                raw,
                stale=stale,
                prefer_local=prefer_local,
                forwarded=FORWARDED in request.headers,
            )
        except _Unavailable as e:
            raise unavailable(e) from None
        if not result["found"]:
            raise HTTPException(
                404,
                f"key {key!r} is not in store {store!r} "
                f"(task {result['task']}, answered by {result['answered_by']})",
            )
        return result

    @app.post("/v1/stores/{store}/keys", summary="Many keys' values, each routed to its owner")
    def get_keys(
        request: Request,
        store: Annotated[str, Path(max_length=249)],
        body: Annotated[KeysRequest, Body()],
        prefer_local: bool = False,
    ) -> dict[str, Any]:
        info = store_info(store)
        forwarded = FORWARDED in request.headers
        parsed = [(text, key_bytes(info, text)) for text in body.keys]
        results: list[dict[str, Any] | None] = [None] * len(parsed)
        # Group by the task's active owner so that each other instance gets one request.
        by_owner: dict[str, list[int]] = {}
        for i, (_, raw) in enumerate(parsed):
            owner = source.owners(task_of(info, raw)).active
            if forwarded or owner in (None, source.instance_id) or prefer_local:
                owner = source.instance_id
            by_owner.setdefault(owner, []).append(i)
        try:
            for owner, indexes in by_owner.items():
                if owner != source.instance_id:
                    try:
                        answer = forward(
                            owner,
                            f"/v1/stores/{store}/keys",
                            {},
                            {"keys": [parsed[i][0] for i in indexes], "stale": body.stale},
                        )
                        for i, result in zip(indexes, answer["results"], strict=True):
                            results[i] = result
                        continue
                    except _Unavailable:
                        pass  # each key takes the single-key route, with its fallbacks
                for i in indexes:
                    text, raw = parsed[i]
                    results[i] = get_one(
                        info,
                        store,
                        text,
                        raw,
                        stale=body.stale,
                        prefer_local=prefer_local,
                        forwarded=forwarded,
                    )
        except _Unavailable as e:
            raise unavailable(e) from None
        return {"results": results}

    @app.get("/v1/stores/{store}/entries", summary="Entries in key order, a page at a time")
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
    ) -> dict[str, Any]:
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
        all_tasks = [TaskId(info.subtopology, p) for p in range(info.partitions)]
        if scope == "local" or FORWARDED in request.headers:
            wanted = tasks_of_store(info, store, tasks) if tasks else all_tasks
            merged, where = _local_raw(info, store, wanted, low, high, limit, stale)
            return _page(info, merged, limit, where)
        return _fan_out(info, store, all_tasks, low, high, limit, stale)

    def tasks_of_store(info: StoreInfo, store: str, listing: str) -> list[TaskId]:
        """The distinct tasks of a `tasks` parameter ("0_1,0_4"), each one of the store's."""
        wanted = sorted({TaskId.parse(t) for t in listing.split(",")})
        for task in wanted:
            if task.subtopology != info.subtopology or not 0 <= task.partition < info.partitions:
                raise HTTPException(400, f"task {task} holds no part of store {store!r}")
        return wanted

    def _fan_out(
        info: StoreInfo,
        store: str,
        all_tasks: list[TaskId],
        low: bytes | None,
        high: bytes | None,
        limit: int,
        stale: bool,
    ) -> dict[str, Any]:
        by_instance: dict[str, list[TaskId]] = {}
        unowned: list[TaskId] = []
        for task in all_tasks:
            owner = source.owners(task).active
            if owner is None:
                unowned.append(task)
            else:
                by_instance.setdefault(owner, []).append(task)
        parts: list[list[tuple[bytes, bytes]]] = []
        where: dict[str, dict[str, Any]] = {}
        retry: list[TaskId] = list(unowned)
        for instance, its_tasks in sorted(by_instance.items()):
            try:
                part, part_where = _ask(
                    instance, info, store, its_tasks, low, high, limit, stale=False
                )
            except _Unavailable as e:
                if not stale:
                    raise HTTPException(
                        503, f"{e.message}; retry, or pass stale=true to read standby copies"
                    ) from None
                retry.extend(its_tasks)
                continue
            parts.append(part)
            where.update(part_where)
        for task in retry:
            if not stale:
                raise HTTPException(
                    503,
                    f"task {task} has no owner right now (a rebalance is under way); "
                    "retry, or pass stale=true",
                )
            holders = [source.instance_id, *source.owners(task).standbys]
            for holder in dict.fromkeys(holders):
                try:
                    part, part_where = _ask(
                        holder, info, store, [task], low, high, limit, stale=True
                    )
                except (_Unavailable, HTTPException):
                    continue
                parts.append(part)
                where.update(part_where)
                break
            else:
                raise HTTPException(503, f"no instance could answer for task {task}")
        merged = list(_first(heapq.merge(*parts), limit))
        return _page(info, merged, limit, where)

    def _ask(
        instance: str,
        info: StoreInfo,
        store: str,
        tasks: list[TaskId],
        low: bytes | None,
        high: bytes | None,
        limit: int,
        *,
        stale: bool,
    ) -> tuple[list[tuple[bytes, bytes]], dict[str, dict[str, Any]]]:
        """Entries of `tasks` from `instance`, as (key, value) bytes."""
        if instance == source.instance_id:
            try:
                answer = _local_raw(info, store, tasks, low, high, limit, stale)
            except HTTPException as e:
                raise _Unavailable(str(e.detail)) from None
            return answer
        params: dict[str, Any] = {
            "tasks": ",".join(map(str, tasks)),
            "limit": limit,
            "stale": stale,
        }
        if low is not None:
            params["low"] = low.hex()
        if high is not None:
            params["high"] = high.hex()
        answer = forward(instance, f"/v1/stores/{store}/raw-entries", params)
        return (
            [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in answer["entries"]],
            answer["tasks"],
        )

    def _local_raw(
        info: StoreInfo,
        store: str,
        tasks: list[TaskId],
        low: bytes | None,
        high: bytes | None,
        limit: int,
        stale: bool,
    ) -> tuple[list[tuple[bytes, bytes]], dict[str, dict[str, Any]]]:
        parts: list[list[tuple[bytes, bytes]]] = []
        where: dict[str, dict[str, Any]] = {}
        for task in tasks:

            def take(backend: TaskStateBackend) -> list[tuple[bytes, bytes]]:
                return list(_first(backend.range(store, low, high), limit))

            copy = source.read_local(task, take, standby=False) or (
                source.read_local(task, take, standby=True) if stale else None
            )
            if copy is None:
                raise HTTPException(
                    503, f"instance {source.instance_id} holds no readable copy of task {task}"
                )
            parts.append(copy.value)
            where[str(task)] = {
                "answered_by": source.instance_id,
                "role": copy.role,
                "lag": copy.lag,
            }
        return list(_first(heapq.merge(*parts), limit)), where

    @app.get("/v1/stores/{store}/raw-entries", include_in_schema=False)
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
    ) -> dict[str, Any]:
        """The part of one instance in a fan-out, as hex bytes (internal)."""
        info = store_info(store)
        entries_, where = _local_raw(
            info,
            store,
            tasks_of_store(info, store, tasks),
            bytes.fromhex(low) if low is not None else None,
            bytes.fromhex(high) if high is not None else None,
            limit,
            stale,
        )
        return {"entries": [(k.hex(), v.hex()) for k, v in entries_], "tasks": where}

    def _page(
        info: StoreInfo,
        merged: list[tuple[bytes, bytes]],
        limit: int,
        where: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        return {
            "entries": [
                {"key": render(info.spec.key_serde, k), "value": render(info.spec.value_serde, v)}
                for k, v in merged
            ],
            "next": merged[-1][0].hex() if len(merged) == limit else None,
            "tasks": where,
            "stale": any(w["role"] != "active" for w in where.values()),
        }

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


def _first(items: Iterator[tuple[bytes, bytes]] | Any, limit: int) -> Iterator[tuple[bytes, bytes]]:
    for count, item in enumerate(items):
        if count >= limit:
            return
        yield item


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: none)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


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
