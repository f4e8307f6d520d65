"""`Forwarder` over an in-process transport (no network): each forward gets only the time its
request has left, the worker's forward gate refuses instead of queueing, and a hung or dead
instance costs one forward, not one per request."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from fastapi import HTTPException

from processor.query.forwarding import FORWARDED, SUSPECT_S, Forwarder, Unavailable
from processor.query.limits import Deadline, Overloaded

ENDPOINTS = {"w1": "http://w1", "w2": "http://w2", "w3": "http://w3"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def forwarder(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    max_forwards: int = 8,
    clock: Callable[[], float] | None = None,
) -> Forwarder:
    return Forwarder(
        instance_id="w0",
        endpoint=ENDPOINTS.get,
        token="t0k",
        max_forwards=max_forwards,
        transport=httpx.MockTransport(handler),
        **({"clock": clock} if clock else {}),
    )


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"results": []})


def test_a_forward_gets_the_time_its_request_has_left_and_says_it_is_forwarded() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    clock = Clock()
    deadline = Deadline(5.0, clock=clock)
    clock.now += 3.5
    answer = forwarder(handler).forward("w1", "/v1/x", deadline=deadline, body={"keys": []})
    assert answer == {"results": []}
    (request,) = seen
    timeout = request.extensions["timeout"]
    assert timeout["read"] == pytest.approx(1.5)
    assert timeout["connect"] == pytest.approx(1.0)
    assert request.headers[FORWARDED] == "w0"
    assert request.headers["authorization"] == "Bearer t0k"


def test_no_forward_when_the_time_is_up() -> None:
    calls = Counter[str]()

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.host] += 1
        return ok(request)

    clock = Clock()
    deadline = Deadline(5.0, clock=clock)
    clock.now += 5
    with pytest.raises(Overloaded) as refused:
        forwarder(handler).forward("w1", "/v1/x", deadline=deadline)
    assert refused.value.limit == "query_timeout_ms"
    assert refused.value.retry_after_s == 2
    assert not calls


def test_a_forward_beyond_the_gate_is_refused_at_once() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def handler(request: httpx.Request) -> httpx.Response:
        entered.release()
        release.wait(5)
        return ok(request)

    forwards = forwarder(handler, max_forwards=2)
    waiting = [
        threading.Thread(
            target=forwards.forward, args=(w, "/v1/x"), kwargs={"deadline": Deadline(5)}
        )
        for w in ("w1", "w2")
    ]
    for thread in waiting:
        thread.start()
    for _ in waiting:
        assert entered.acquire(timeout=5)
    try:
        with pytest.raises(Overloaded) as refused:
            forwards.forward("w3", "/v1/x", deadline=Deadline(5))
        assert refused.value.limit == "query_max_forwards"
    finally:
        release.set()
        for thread in waiting:
            thread.join(5)


def test_one_instance_gets_at_most_half_the_forwards_the_others_the_rest() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "w1":  # hung
            entered.release()
            release.wait(5)
        return ok(request)

    forwards = forwarder(handler, max_forwards=4)
    assert forwards.per_instance == 2
    hung = [
        threading.Thread(
            target=forwards.forward, args=("w1", "/v1/x"), kwargs={"deadline": Deadline(5)}
        )
        for _ in range(2)
    ]
    for thread in hung:
        thread.start()
    for _ in hung:
        assert entered.acquire(timeout=5)
    try:
        with pytest.raises(Unavailable, match="w1 already has 2 forwards from here waiting"):
            forwards.forward("w1", "/v1/x", deadline=Deadline(5))
        assert forwards.forward("w2", "/v1/x", deadline=Deadline(5)) == {"results": []}
    finally:
        release.set()
        for thread in hung:
            thread.join(5)


def test_an_instance_that_did_not_answer_is_not_asked_again_for_a_while() -> None:
    calls = Counter[str]()

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.host] += 1
        if request.url.host == "w1":
            raise httpx.ReadTimeout("no answer", request=request)
        return ok(request)

    clock = Clock()
    forwards = forwarder(handler, clock=clock)
    with pytest.raises(Unavailable, match=r"w1 at http://w1 did not answer within 5\.0 s"):
        forwards.forward("w1", "/v1/x", deadline=Deadline(5))
    for _ in range(100):
        with pytest.raises(Unavailable, match="did not answer a forward moments ago"):
            forwards.forward("w1", "/v1/x", deadline=Deadline(5))
    assert calls["w1"] == 1
    assert forwards.forward("w2", "/v1/x", deadline=Deadline(5)) == {"results": []}
    clock.now += SUSPECT_S
    with pytest.raises(Unavailable, match="did not answer within"):
        forwards.forward("w1", "/v1/x", deadline=Deadline(5))  # tried again, once
    assert calls["w1"] == 2


def test_an_instance_that_answers_again_is_no_longer_suspect() -> None:
    down = {"w1"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host in down:
            raise httpx.ConnectError("refused", request=request)
        return ok(request)

    clock = Clock()
    forwards = forwarder(handler, clock=clock)
    with pytest.raises(Unavailable, match="unreachable"):
        forwards.forward("w1", "/v1/x", deadline=Deadline(5))
    down.clear()
    clock.now += SUSPECT_S
    assert forwards.forward("w1", "/v1/x", deadline=Deadline(5)) == {"results": []}
    assert forwards.forward("w1", "/v1/x", deadline=Deadline(5)) == {"results": []}


def test_a_timeout_with_little_time_left_does_not_make_an_instance_suspect() -> None:
    calls = Counter[str]()

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.url.host] += 1
        raise httpx.ReadTimeout("no answer", request=request)

    forwards = forwarder(handler)
    for _ in range(3):
        with pytest.raises(Unavailable, match=r"did not answer within 0\.5 s"):
            forwards.forward("w1", "/v1/x", deadline=Deadline(0.5))
    assert calls["w1"] == 3


def test_answers_other_than_200() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/missing":
            return httpx.Response(404, json={"detail": "no store 'x'"})
        if request.url.path == "/busy":
            return httpx.Response(503, json={"detail": "busy"}, headers={"retry-after": "1"})
        return httpx.Response(200, text="not json")

    forwards = forwarder(handler)
    with pytest.raises(HTTPException) as missing:
        forwards.forward("w1", "/missing", deadline=Deadline(5))
    assert missing.value.status_code == 404 and missing.value.detail == "no store 'x'"
    with pytest.raises(Unavailable, match="instance w1 answered 503: busy"):
        forwards.forward("w1", "/busy", deadline=Deadline(5))
    with pytest.raises(Unavailable, match="not JSON"):
        forwards.forward("w1", "/odd", deadline=Deadline(5))
    with pytest.raises(Unavailable, match="no endpoint"):
        forwards.forward("w9", "/v1/x", deadline=Deadline(5))
