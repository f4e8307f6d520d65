"""The status page and the health endpoints every worker serves.

- `GET /`: the status page (`processor.query.status_html`): the topology drawing and every
  instance with its tasks. Its figures are gathered when the page is asked for: this worker's
  from its latest snapshot, the others' from their `GET /v1/instance`, all at once, each
  within `GATHER_TIMEOUT_S`; an instance that does not answer in time is shown as not
  answering. Only the endpoints of the group's current members are asked (a status on the
  metadata topic alone sends nobody the token).
- `GET /v1/instance`: this worker's own figures (`processor.status.view.InstanceFigures`).
- `GET /v1/status`: the page's view as JSON (`StatusView`), for `processor status`.
- `POST /login`: the token form's answer; sets the page's cookie (`processor.query.guard`).
- `GET /health/live`: 200 while the main loop publishes its snapshot (it does about once a
  second; `LIVE_WITHIN_S` without one is a hung loop), else 503.
- `GET /health/ready`: 200 while live and running the group's current assignment (a restore
  does not make a worker unready: its other tasks run, and its restoring tasks need it up),
  503 before it joined and while it waits for its group. Neither health endpoint needs the
  token nor says more than ok / not ok.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from processor.metrics import WorkerMetrics
from processor.query.guard import COOKIE_NAME, cookie_value
from processor.query.status_html import status_page, token_form
from processor.status.view import (
    InstanceFigures,
    KnownInstance,
    StatusView,
    build_view,
    figures_of,
)

__all__ = ["GATHER_TIMEOUT_S", "LIVE_WITHIN_S", "StatusSource", "add_status_routes"]

# Another instance answers from memory in milliseconds; one that takes longer is stuck or gone,
# and the page must not wait for it.
GATHER_TIMEOUT_S = 1.5
# The main loop publishes about once a second, and no step of it blocks for more than a part
# of max.poll.interval.ms; half a minute without a snapshot is a loop that no longer runs.
LIVE_WITHIN_S = 30.0
_READY_STATE = "running"


@dataclass(frozen=True)
class StatusSource:
    """What the page needs of its worker. `known`: the instances the worker knows of (their
    statuses on the metadata topic and their tasks in the current assignment), called on the
    HTTP thread."""

    application: str
    instance_id: str
    metrics: WorkerMetrics
    topology_svg: str
    known: Callable[[], Mapping[str, KnownInstance]]
    token: str | None = None

    def own_figures(self) -> InstanceFigures:
        return figures_of(self.metrics.snapshot, self.metrics.previous)

    def live(self) -> bool:
        state = self.metrics.snapshot.state
        return (
            state not in ("failed", "stopped")
            and self.metrics.seconds_since_publish() <= LIVE_WITHIN_S
        )

    def ready(self) -> bool:
        return self.live() and self.metrics.snapshot.state == _READY_STATE

    async def gather(self, client: httpx.AsyncClient) -> StatusView:
        """Every known instance with its figures, the others' asked for with `client`."""
        known = dict(self.known())
        if self.instance_id not in known:
            known[self.instance_id] = KnownInstance(self.instance_id)
        answers: dict[str, InstanceFigures | str] = {self.instance_id: self.own_figures()}
        others = {
            name: info.endpoint
            for name, info in known.items()
            if name != self.instance_id and info.endpoint
        }
        found = await asyncio.gather(
            *(_ask(client, name, endpoint) for name, endpoint in others.items())
        )
        answers.update(zip(others, found, strict=True))
        return build_view(self.application, self.instance_id, known, answers)


async def _ask(client: httpx.AsyncClient, name: str, endpoint: str) -> InstanceFigures | str:
    """`name`'s figures, or what went wrong asking for them."""
    try:
        response = await client.get(endpoint.rstrip("/") + "/v1/instance")
    except httpx.TimeoutException:
        return f"no answer within {GATHER_TIMEOUT_S:g} s"
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e or 'no answer'}"
    if response.status_code != 200:
        return f"answered {response.status_code}"
    try:
        figures = InstanceFigures.from_json(response.json())
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"answered figures this worker cannot read ({type(e).__name__})"
    if figures.instance != name:
        return f"answered as instance {figures.instance!r}"
    return figures


class _Asker:
    """One HTTP client for every gathering, made on first use, on the server's event loop:
    making one costs more than asking every instance (about 35 ms, its TLS context). It lives
    as long as the server's loop (the worker's life); its idle connections go with it."""

    def __init__(self, token: str | None) -> None:
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=GATHER_TIMEOUT_S, headers=self._headers)
        return self._client


def add_status_routes(app: FastAPI, source: StatusSource) -> None:
    asker = _Asker(source.token)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        view = await source.gather(asker.client)
        return HTMLResponse(status_page(view, source.topology_svg))

    @app.get("/v1/instance", summary="This worker's figures for the status page")
    def instance() -> JSONResponse:
        return JSONResponse(source.own_figures().to_json())

    @app.get("/v1/status", summary="Every instance's figures, as the status page shows them")
    async def status() -> JSONResponse:
        return JSONResponse((await source.gather(asker.client)).to_json())

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if source.token is None:
            return RedirectResponse("/", status_code=303)
        form = parse_qs((await request.body()).decode(errors="replace"))
        given = (form.get("token") or [""])[0]
        if not secrets.compare_digest(given.encode(), source.token.encode()):
            return HTMLResponse(token_form(source.application, wrong=True), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE_NAME, cookie_value(source.token), httponly=True, samesite="strict", path="/"
        )
        return response

    @app.get("/health/live", include_in_schema=False)
    def live() -> JSONResponse:
        return _health(source.live())

    @app.get("/health/ready", include_in_schema=False)
    def ready() -> JSONResponse:
        return _health(source.ready())


def _health(ok: bool) -> JSONResponse:
    return JSONResponse({"status": "ok" if ok else "not ok"}, status_code=200 if ok else 503)
