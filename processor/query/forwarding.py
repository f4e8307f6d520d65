"""One hop of a query to another instance (`Forwarder`), within the request's deadline and the
worker's bounds on forwards (`processor.query.limits`).

A forward gets only the time its request has left: a hung instance (stopped, swapping, behind a
dead link) costs the request its remaining budget once, not a fresh timeout per try. And a hung
instance cannot take every forward slot of the worker:

- at most half of `query_max_forwards` wait on one instance at once; one more is told that
  instance is unavailable (so a stale read goes to a standby) instead of waiting too;
- an instance that did not answer within the time left (a second at least), or could not be
  reached, is not asked again for `SUSPECT_S`: forwards to it fail at once. Then one forward
  tries it again; the others keep failing at once until that one has its answer.

A forward beyond `query_max_forwards` in all is refused at once (`Overloaded`), never queued.
The forwarded request carries `x-processor-forwarded`, so it is answered where it lands and never
forwarded again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import HTTPException

from processor.query.limits import RETRY_UNAVAILABLE_S, Deadline, Gate, Overloaded

__all__ = ["FORWARDED", "Forwarder", "Unavailable"]

FORWARDED = "x-processor-forwarded"
CONNECT_TIMEOUT_S = 1.0
"""Instances of one application are on one network: a connection not made in a second is not
coming, and the rest of the budget is better left to standbys."""
MIN_FORWARD_S = 0.05
"""Less time left than this is not worth a forward: the answer could not arrive in time."""
SUSPECT_S = 2.0
"""How long an instance that did not answer is not asked again. Long enough that a hung
instance costs one forward every two seconds, not one per request; short next to the session
timeout after which a dead instance loses its tasks anyway, so that a live one that stalled for
a moment (a GC pause, a full disk) is soon asked again."""


class Unavailable(Exception):
    """No copy that may answer could (its instance is down, hung or moving); the request is
    answered 503 with Retry-After, or another copy is asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Forwarder:
    """Forwards requests to other instances of the application. Owns the HTTP client (closed
    with `close()`), the gate of forwards in flight and what it knows of each instance;
    thread-safe."""

    def __init__(
        self,
        *,
        instance_id: str,
        endpoint: Callable[[str], str | None],
        token: str | None,
        max_forwards: int,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint = endpoint
        self._headers = {FORWARDED: instance_id}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self.gate = Gate(
            max_forwards, setting="query_max_forwards", what="forwards to other instances"
        )
        self.per_instance = max(1, max_forwards // 2)
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting: Counter[str] = Counter()  # forwards in flight, per instance
        self._suspect_until: dict[str, float] = {}  # instances that did not answer
        # Made at the first forward: an httpx client loads the TLS certificates when it is
        # made (0.2 s or more), which every worker would otherwise pay at start.
        self._make_client: Callable[[], httpx.Client] = lambda: httpx.Client(
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_forwards, max_keepalive_connections=max_forwards
            ),
        )
        self._client: httpx.Client | None = None
        self._closed = False

    def forward(
        self,
        instance: str,
        path: str,
        *,
        deadline: Deadline,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """The JSON answer of `instance` to `path` (GET, or POST of `body`). Raises Unavailable
        when it cannot answer (in the time left), Overloaded when the time is already up or too
        many forwards are in flight, HTTPException(404) when it says not found."""
        endpoint = self._endpoint(instance)
        if endpoint is None:
            raise Unavailable(f"instance {instance} has published no endpoint")
        left = deadline.remaining()
        if left < MIN_FORWARD_S:
            raise Overloaded(
                f"the request's time ({deadline.seconds:.1f} s, query_timeout_ms) ran out before "
                f"instance {instance} could be asked; retry after {RETRY_UNAVAILABLE_S} s, or ask "
                "for fewer keys at once",
                limit="query_timeout_ms",
                retry_after_s=RETRY_UNAVAILABLE_S,
            )
        self._claim(instance)
        try:
            with self.gate.hold():
                response = self._send(instance, endpoint, path, params, body, left)
        finally:
            with self._lock:
                self._waiting[instance] -= 1
        if response.status_code == 404:
            raise HTTPException(404, _detail(response) or "not found")
        if response.status_code != 200:
            shown = _detail(response) or response.text[:200]
            raise Unavailable(f"instance {instance} answered {response.status_code}: {shown}")
        try:
            return response.json()
        except ValueError:
            raise Unavailable(
                f"instance {instance} answered 200 with a body that is not JSON"
            ) from None

    def _claim(self, instance: str) -> None:
        """Count a forward to `instance` in, or raise Unavailable when it is suspect or has as
        many forwards waiting as one instance may."""
        with self._lock:
            if self._waiting[instance] >= self.per_instance:
                raise Unavailable(
                    f"instance {instance} already has {self._waiting[instance]} forwards from here "
                    "waiting for an answer (half of query_max_forwards); it is slow or hung"
                )
            now = self._clock()
            until = self._suspect_until.get(instance)
            if until is not None:
                if now < until:
                    raise Unavailable(
                        f"instance {instance} did not answer a forward moments ago; it is asked "
                        f"again {until - now:.1f} s from now"
                    )
                # This forward tries it again; the others fail at once until it has an answer.
                self._suspect_until[instance] = now + SUSPECT_S
            self._waiting[instance] += 1

    def _send(
        self,
        instance: str,
        endpoint: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        left: float,
    ) -> httpx.Response:
        try:
            response = self._http().request(
                "GET" if body is None else "POST",
                endpoint + path,
                params=params,
                json=body,
                headers=self._headers,
                timeout=httpx.Timeout(left, connect=min(CONNECT_TIMEOUT_S, left)),
            )
        except httpx.TimeoutException as e:
            if left >= CONNECT_TIMEOUT_S:  # with less time, a healthy instance may miss it too
                self._suspect(instance)
            raise Unavailable(
                f"instance {instance} at {endpoint} did not answer within {left:.1f} s "
                "(the time the request had left, query_timeout_ms)"
            ) from e
        except httpx.TransportError as e:
            self._suspect(instance)
            raise Unavailable(f"instance {instance} at {endpoint} is unreachable: {e}") from e
        except httpx.HTTPError as e:
            raise Unavailable(f"forwarding to instance {instance} failed: {e}") from e
        with self._lock:
            self._suspect_until.pop(instance, None)
        return response

    def _suspect(self, instance: str) -> None:
        with self._lock:
            self._suspect_until[instance] = self._clock() + SUSPECT_S

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._closed:
                raise RuntimeError("the forwarder is closed")
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _detail(response: httpx.Response) -> str | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    detail = answer.get("detail") if isinstance(answer, dict) else None
    return str(detail)[:300] if detail is not None else None
