"""The checks every request passes before the API sees it (`Guard`, ASGI middleware): the
bearer token, the body size, and for reads of store contents a slot of the worker's request
gate (`processor.query.limits`).

The status page (`processor.query.status_routes`) is for people with a browser, which cannot
send a bearer header: its token form (`POST /login`) sets a cookie (HttpOnly, SameSite=Strict)
whose value is derived from the token (`cookie_value`: the cookie cannot be used as the bearer
token elsewhere), and the guard accepts that cookie for the page and its data
(`COOKIE_PATHS`), nothing else. Without the token or the cookie, `/` answers with the token
form. The health endpoints (`OPEN_PATHS`) need no token: Kubernetes' probes send none.

Plain ASGI rather than an `@app.middleware("http")` function: a refusal is answered without
reading the body and without the task and streams that kind of middleware sets up, so that a
storm of refused requests costs the event loop, which also answers `/metrics` and the store
listing, as little as it can.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from processor.query.limits import Gate, Overloaded

__all__ = [
    "COOKIE_NAME",
    "COOKIE_PATHS",
    "MAX_BODY_BYTES",
    "OPEN_PATHS",
    "READS",
    "Guard",
    "cookie_value",
]

MAX_BODY_BYTES = 1_000_000
READS = "/v1/stores/"
"""Reads of store contents (paths under it) take a slot of the gate; the store listing,
metadata, lag and /metrics are cheap and always answered."""
OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/login"})
COOKIE_PATHS = frozenset({"/", "/v1/instance", "/v1/status"})
COOKIE_NAME = "processor_status"
PAGE = "/"


def cookie_value(token: str) -> str:
    """What the status page's cookie holds for `token`: a MAC of a fixed text under it."""
    return hmac.new(token.encode(), b"processor status page", hashlib.sha256).hexdigest()


def _cookie(header: bytes | None) -> bytes | None:
    for part in (header or b"").split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == COOKIE_NAME.encode():
            return value
    return None


class Guard:
    """`token_form`: the page `/` answers with when neither the token nor the cookie came."""

    def __init__(
        self, app: ASGIApp, *, token: str | None, gate: Gate, token_form: str = ""
    ) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode() if token is not None else None
        self._cookie = cookie_value(token).encode() if token is not None else None
        self._gate = gate
        self._token_form = token_form

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
        authorization = length = cookie = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
            elif name == b"cookie":
                cookie = value
        path = scope["path"]
        if not self._authorized(path, authorization, cookie):
            if path == PAGE and self._token_form:
                return HTMLResponse(self._token_form, status_code=401)
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

    def _authorized(self, path: str, authorization: bytes | None, cookie: bytes | None) -> bool:
        if self._expected is None or path in OPEN_PATHS:
            return True
        if secrets.compare_digest(authorization or b"", self._expected):
            return True
        given = _cookie(cookie)
        return (
            path in COOKIE_PATHS
            and given is not None
            and self._cookie is not None
            and secrets.compare_digest(given, self._cookie)
        )
