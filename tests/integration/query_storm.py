"""Processes for `test_query_load`: a storm of query requests, and probes of the cheap endpoints.

Each runs on its own, so that what they measure is the workers and not the test's threads
queueing for one interpreter. The storm runs at a lower CPU priority (nice 10), as clients on
other machines would: on a two-core test box it would otherwise take the cores from the very
workers it measures.

    python -m tests.integration.query_storm load   < plan (JSON)   > answers (JSON)
    python -m tests.integration.query_storm probe URLS INTERVAL     (stdin: a line to stop)

`probe` keeps its connections, as a Prometheus server does: it asks each URL and path once,
prints "ready", probes each every INTERVAL seconds until a line arrives on stdin, then prints
the probes as JSON.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, NamedTuple

import httpx


class Answer(NamedTuple):
    kind: str
    status: int  # -1: no answer (the client gave up)
    seconds: float
    at: float  # when it was sent, in seconds after the storm began
    retry_after: str | None
    limit: str  # the body's "limit", when it names one
    detail: str  # the body's "detail", when not 200


class Probe(NamedTuple):
    url: str
    status: int | None  # None: no answer within 3 s
    seconds: float
    at: float  # seconds after "ready"


def _storm(
    url: str,
    kinds: list[tuple[str, str, str, str | None]],
    start: float,
    plan: dict[str, Any],
    answers: list[Answer],
) -> None:
    """Send requests of `kinds` in turn to `url`, each as soon as the last one is answered
    (a refusal's Retry-After is ignored: this is a storm)."""
    until = start + plan["seconds"]
    with httpx.Client(base_url=url, timeout=plan["timeout"]) as client:
        turn = 0
        while time.monotonic() < until:
            kind, method, path, body = kinds[turn % len(kinds)]
            turn += 1
            began = time.monotonic()
            try:
                response = client.request(
                    method,
                    path,
                    content=body,
                    headers={"content-type": "application/json"} if body else None,
                )
            except httpx.HTTPError as e:
                took = time.monotonic() - began
                answers.append(Answer(kind, -1, took, began - start, None, "", repr(e)))
                continue
            took = time.monotonic() - began
            limit = detail = ""
            if response.status_code != 200:
                try:
                    answer = response.json()
                    limit, detail = answer.get("limit", ""), answer["detail"]
                except (ValueError, KeyError):
                    detail = "(no JSON detail) " + response.text[:300]
            retry_after = response.headers.get("retry-after")
            answers.append(
                Answer(kind, response.status_code, took, began - start, retry_after, limit, detail)
            )


def load() -> None:
    """Plan on stdin: urls, kinds ([kind, method, path, body or null]), threads, seconds,
    timeout. Thread i sends to urls[i % len(urls)], starting at kinds[i]."""
    os.nice(10)
    plan = json.load(sys.stdin)
    kinds = [tuple(k) for k in plan["kinds"]]
    answers: list[Answer] = []  # list.append is atomic
    start = time.monotonic()
    threads = [
        threading.Thread(
            target=_storm,
            args=(
                plan["urls"][i % len(plan["urls"])],
                kinds[i % len(kinds) :] + kinds[: i % len(kinds)],
            ),
            kwargs={"start": start, "plan": plan, "answers": answers},
            daemon=True,
        )
        for i in range(plan["threads"])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, start + plan["seconds"] + plan["timeout"] + 2 - time.monotonic()))
    waiting = sum(thread.is_alive() for thread in threads)
    json.dump({"answers": answers, "waiting": waiting}, sys.stdout)


def probe(urls: list[str], interval: float) -> None:
    over = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), over.set()), daemon=True).start()
    seen: list[Probe] = []
    paths = ("/metrics", "/v1/stores")
    with httpx.Client(timeout=3.0, follow_redirects=True) as client:
        for url in urls:
            for path in paths:
                client.get(url + path)
        print("ready", flush=True)
        start = time.monotonic()
        while not over.is_set():
            for url in urls:
                for path in paths:
                    began = time.monotonic()
                    try:
                        status: int | None = client.get(url + path).status_code
                    except httpx.HTTPError:
                        status = None
                    seen.append(Probe(url + path, status, time.monotonic() - began, began - start))
            over.wait(interval)
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load()
    else:
        probe(json.loads(sys.argv[2]), float(sys.argv[3]))
