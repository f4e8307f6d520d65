"""The checks every request passes before the API sees it (`Guard`, ASGI middleware): the
bearer token, the body size, and for reads of store contents a slot of the worker's request
gate (`processor.query.limits`).

Plain ASGI rather than an `@app.middleware("http")` function: a refusal is answered without
reading the body and without the task and streams that kind of middleware sets up, so that a
storm of refused requests costs the event loop, which also answers `/metrics` and the store
listing, as little as it can.
"""

from __future__ import annotations

import secrets

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from processor.query.limits import Gate, Overloaded

__all__ = ["MAX_BODY_BYTES", "READS", "Guard"]

MAX_BODY_BYTES = 1_000_000
READS = "/v1/stores/"
"""Reads of store contents (paths under it) take a slot of the gate; the store listing,
metadata, lag and /metrics are cheap and always answered."""


class Guard:
    def __init__(self, app: ASGIApp, *, token: str | None, gate: Gate) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode() if token is not None else None
        self._gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if not scope["path"].startswith(READS):
            await self._app(scope, receive, send)
            return
        try:
            self._gate.enter()
        except Overloaded as e:
            await e.response()(scope, receive, send)
            return
        try:
            await self._app(scope, receive, send)
        finally:
            self._gate.leave()

    def _refusal(self, scope: Scope) -> Response | None:
        authorization = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        if self._expected is not None and not secrets.compare_digest(
            authorization or b"", self._expected
        ):
            return JSONResponse(
                {"detail": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(
                {"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        return None
