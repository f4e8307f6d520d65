"""The HTTP API every worker serves: the status page and health endpoints
(`processor.query.status_routes`), its stores' contents (one key, many keys, ranges and whole
stores with paging; the windows of window and session stores in a time range, of one key or of
every key), where each key lives, lag per task, and Prometheus `/metrics`.

Routing. A key goes to the partition Kafka's default partitioner gives its serialized key, so
to the task producers write it to. The instance that holds the task's active copy answers; any
other instance forwards the request there, once (a forwarded request is answered where it
lands, never forwarded again), and the response names the instance that answered. Range and
whole-store reads fan out: each task is read on its active instance (`scope=local` with the
tasks to read) and the parts are merged in key order, each key once. Paging continues after
the last key of the previous page (`after`, the serialized key in hex), which stays correct
across instances because every part is sorted by the same bytes. Windows are read the same
way: one key's on its task's copy, every key's from every task, a page at a time.

Standby reads (`stale=true`). When the active copy cannot answer (its instance is down, the
task is moving) a standby answers instead, locally when this worker holds one, and the response
says it is stale and how many changelog records it is behind. `prefer_local=true` reads a local
copy first even when the active one could answer.

Bounds. One request makes at most one forward per instance and step, all within one deadline,
and a worker serves a bounded number of reads and forwards at once; a request over a bound is
refused at once with 503 (413 for too many keys), a `Retry-After` header and a JSON body naming
the limit (`processor.query.limits`).

Security. With a token configured every endpoint, `/metrics` and the OpenAPI document
included, requires `Authorization: Bearer <token>`, except the health endpoints and the status
page, which takes the token once in a form and keeps a cookie (`processor.query.guard`). Bad
requests get a 4xx with a message.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, make_asgi_app
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from processor.query import routes
from processor.query.forwarding import Unavailable
from processor.query.guard import Guard
from processor.query.limits import Gate, Overloaded, QueryLimits
from processor.query.listener import listen
from processor.query.queries import StoreQueries
from processor.query.routes import MAX_KEY_CHARS, MAX_LIMIT
from processor.query.source import QuerySource
from processor.query.status_html import token_form
from processor.query.status_routes import StatusSource, add_status_routes

__all__ = ["MAX_KEY_CHARS", "MAX_LIMIT", "MAX_REQUEST_HEAD_BYTES", "QueryServer", "build_app"]

log = logging.getLogger("processor.query")

# uvicorn's limit for an incomplete request head: the longest valid URL fits it
# (processor.query.routes.MAX_KEY_CHARS).
MAX_REQUEST_HEAD_BYTES = 128 * 1024


def build_app(
    source: QuerySource,
    *,
    token: str | None,
    registry: CollectorRegistry | None = None,
    limits: QueryLimits | None = None,
    status: StatusSource | None = None,
) -> FastAPI:
    """The query API of the worker `source` describes: the endpoints of
    `processor.query.routes` over one `StoreQueries`, behind the `Guard` (the token, the body
    size, the worker's gate of reads), with `registry` at `/metrics` and the status page and
    health endpoints over `status` when given."""
    queries = StoreQueries(source, token=token, limits=limits)
    app = FastAPI(
        title="processor queryable state",
        version="1",
        description=(__doc__ or "").split("\n\n", 1)[1],
        exception_handlers={Overloaded: routes.overloaded, Unavailable: routes.unavailable},
    )
    app.state.queries = queries
    app.add_middleware(
        Guard,
        token=token,
        gate=Gate(
            queries.limits.max_requests,
            setting="query_max_requests",
            what="reads of store contents",
        ),
        token_form="" if status is None else token_form(status.application),
    )
    if registry is not None:
        _serve_metrics(app, registry)
    if token is not None:
        _document_bearer(app)
    routes.add_routes(app)
    if status is not None:
        add_status_routes(app, status)
    return app


def _serve_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    metrics = make_asgi_app(registry)
    # At /metrics itself, not only under the mount: a scrape of /metrics was a redirect to
    # /metrics/ first, two requests where one does.
    app.router.routes.append(Route("/metrics", _Asgi(metrics), include_in_schema=False))
    app.mount("/metrics", metrics)


def _document_bearer(app: FastAPI) -> None:
    """Have the OpenAPI document say that every operation needs the bearer token."""
    plain_openapi = app.openapi

    def openapi_with_bearer() -> dict[str, Any]:
        document = plain_openapi()
        schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer"}
        document["security"] = [{"bearer": []}]
        return document

    app.openapi = openapi_with_bearer  # type: ignore[method-assign]


class _Asgi:
    """An ASGI app that Starlette's `Route` takes for one (it wraps plain functions as request
    handlers)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


class QueryServer:
    """Serves `app` with uvicorn on a thread of its own."""

    def __init__(
        self, app: FastAPI, host: str, port: int, *, listening: socket.socket | None = None
    ) -> None:
        """Serve on `listening` when given (a socket `processor.query.listener.listen` made),
        else on a socket bound to `host`:`port` now (`ConfigError` when it cannot be)."""
        self._socket = listen(host, port) if listening is None else listening
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            # No handlers of uvicorn's own: its lines go through the root logger, in the
            # format the worker logs in (--log-format json included).
            log_config=None,
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
