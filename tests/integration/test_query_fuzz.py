"""The query API of a real worker, fuzzed from the OpenAPI document it serves (schemathesis):
no request, valid or not, gets a 5xx from a worker that runs all its tasks; with a token, every
operation refuses a request without it. Also `QueryClient.for_application` and `processor
query APP_ID` on the real metadata topic."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode

from processor.cli import main
from processor.query.client import QueryClient, QueryError
from processor.query.server import MAX_REQUEST_HEAD_BYTES
from processor.status.record import InstancePhase, InstanceStatus
from tests.integration.workers import WorkerProcess, start_worker
from tests.kafka_helpers import create_topic, produce

TOPOLOGY = "tests.worker_topologies:keyed_counting"
KEYS = 60
STORE = "counts"
TOKEN = "fuzz-secret"
# uvicorn (h11) drops the connection, with no response, when a request's head arrives in parts
# adding up to more than this; only oversized invalid requests come near it.
_MAX_HEAD = MAX_REQUEST_HEAD_BYTES


def _status(instance: str, phase: InstancePhase, endpoint: str) -> bytes:
    """A status as a worker publishes it, dated a minute ahead: newer than any real one."""
    return InstanceStatus(
        instance, phase, endpoint=endpoint, updated_ms=int(time.time() * 1000) + 60_000
    ).to_json()


def produce_keys(bootstrap: str, topic: str, keys: int) -> dict[str, int]:
    """One record per key `k0..k{keys-1}`, partitioned with murmur2 as the query API routes
    keys (librdkafka's default, CRC32, puts most of them elsewhere: see the README)."""
    names = [f"k{i}" for i in range(keys)]
    produce(bootstrap, topic, [(k, "1") for k in names], partitioner="murmur2_random")
    return dict.fromkeys(names, 1)


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop_quietly()


def _start(
    workers: list[WorkerProcess],
    bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    instance: str,
    *extra: str,
) -> str:
    """Start a worker serving the query API on a free port; returns its URL."""
    worker = start_worker(
        TOPOLOGY, bootstrap=bootstrap, env=topics, workdir=tmp_path, instance=instance, extra=extra
    )
    workers.append(worker)
    return worker.url(timeout=30)


def _wait_for(what: str, timeout: float, attempt: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if attempt():
                return
        except QueryError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


def _describe(case: schemathesis.Case, base_url: str) -> str:
    path = {k: _short(v) for k, v in (case.path_parameters or {}).items()}
    query = {k: _short(v) for k, v in (case.query or {}).items()}
    body = f" body={_short(case.body)}" if isinstance(case.body, dict | list) else ""
    curl = _short(case.as_curl_command(base_url=base_url), 600)
    return f"{case.method} {case.operation.path} path={path} query={query}{body}\n    {curl}"


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _head_size(case: schemathesis.Case, base_url: str) -> int:
    kwargs = case.as_transport_kwargs(base_url=base_url)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        params=kwargs.get("params"),
        headers=kwargs.get("headers"),
    ).prepare()
    return len(prepared.url or "") + sum(len(k) + len(v) for k, v in prepared.headers.items())


@dataclass
class Fuzzing:
    """Requests sent to `base_url`, and those that failed: a 5xx, or no answer at all (except
    to an invalid request whose head is over `_MAX_HEAD`)."""

    base_url: str
    sent: int = 0
    failures: list[str] = field(default_factory=list)

    def send(self, case: schemathesis.Case, *, valid: bool) -> None:
        self.sent += 1
        try:
            response = case.call(base_url=self.base_url, timeout=15)
        except requests.RequestException as e:
            if valid or _head_size(case, self.base_url) <= _MAX_HEAD:
                self.failures.append(
                    f"no response ({type(e).__name__}: {e}) to {_describe(case, self.base_url)}"
                )
            return
        if response.status_code >= 500:
            self.failures.append(
                f"{response.status_code} {_short(response.text)} for "
                f"{_describe(case, self.base_url)}"
            )

    def run(self, strategy: SearchStrategy[schemathesis.Case], examples: int, valid: bool) -> None:
        """`examples` cases drawn from `strategy`, the same ones on every run."""

        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def draw(case: schemathesis.Case) -> None:
            self.send(case, valid=valid)

        draw()


def _fuzz(base_url: str, *, positive: int, negative: int) -> Fuzzing:
    """Every operation of the OpenAPI document `base_url` serves: `positive` schema-valid and
    `negative` invalid requests each, with the store pinned to the worker's (any other is a
    404 that goes no further), and a few valid ones about keys that exist."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    fuzzing = Fuzzing(base_url)
    for result in schema.get_all_operations():
        operation = result.ok()
        if not list(operation.iter_parameters()):
            fuzzing.send(operation.Case(), valid=True)  # nothing to generate
            continue
        pinned = {"store": STORE} if operation.get_parameter("store", "path") else None
        for mode, examples in (
            (GenerationMode.POSITIVE, positive),
            (GenerationMode.NEGATIVE, negative),
        ):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned)
            fuzzing.run(strategy, examples, valid=mode is GenerationMode.POSITIVE)
        if operation.get_parameter("key", "path"):
            strategy = operation.as_strategy(path_parameters={"store": STORE, "key": "k7"})
            fuzzing.run(strategy, 10, valid=True)
        if operation.method.upper() == "POST":
            body = {"keys": ["k1", "nope", "k2", "k1"], "stale": False}
            strategy = operation.as_strategy(path_parameters=pinned, body=body)
            fuzzing.run(strategy, 5, valid=True)
    return fuzzing


def test_fuzzing_the_openapi_document_finds_no_server_errors(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    produced = produce_keys(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], KEYS)
    url = _start(workers, kafka_bootstrap, topics, tmp_path, "fuzz-a")
    with QueryClient(url, timeout=5) as client:
        # Running every task: each key counted once, readable through the API.
        _wait_for(
            f"{KEYS} counted keys on {url}",
            40,
            lambda: len(list(client.entries(STORE, page_size=25))) == KEYS,
        )
        assert dict(client.entries(STORE, page_size=7)) == {k: str(n) for k, n in produced.items()}
        assert client.get(STORE, "k7") == "1"
        assert client.get_many(STORE, ["k1", "nope", "k2"]) == {"k1": "1", "k2": "1"}
        with pytest.raises(KeyError):
            client.get(STORE, "nope")
        assert client.key_metadata(STORE, "k1")["active_endpoint"] == url

        # Finding the worker on the metadata topic, past a newer status of a killed worker.
        application = topics["PROCESSOR_APPLICATION_ID"]
        ghost = _status("ghost", InstancePhase.RUNNING, "http://127.0.0.1:9")
        produce(kafka_bootstrap, f"{application}-metadata", [(b"ghost", ghost)])
        with QueryClient.for_application(kafka_bootstrap, application) as found:
            assert found.url == url
        with pytest.raises(QueryError, match=f"topic '{application}-x-metadata' does not exist"):
            QueryClient.for_application(kafka_bootstrap, f"{application}-x", wait=1)
        create_topic(kafka_bootstrap, f"{application}-y-metadata")
        stopped = _status("gone", InstancePhase.STOPPED, url)
        produce(kafka_bootstrap, f"{application}-y-metadata", [(b"gone", stopped)])
        with pytest.raises(
            QueryError,
            match=rf"no running instance .* on topic '{application}-y-metadata' "
            r"\(read for 2s; instances: gone \(stopped, endpoint http://",
        ):
            QueryClient.for_application(kafka_bootstrap, f"{application}-y", wait=2)

        fuzzing = _fuzz(url, positive=50, negative=25)
        assert fuzzing.sent > 300
        assert not fuzzing.failures, (
            f"{len(fuzzing.failures)} of {fuzzing.sent} requests failed:\n"
            + "\n".join(fuzzing.failures)
        )
        # Still serving after the fuzzing.
        assert client.get(STORE, "k3") == "1"


def test_processor_query_with_an_application_id(
    kafka_bootstrap: str,
    topics: dict[str, str],
    tmp_path: Path,
    workers: list[WorkerProcess],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    produce_keys(kafka_bootstrap, topics["TEST_SOURCE_TOPIC"], 5)
    url = _start(workers, kafka_bootstrap, topics, tmp_path, "cli-a", "--http-token", TOKEN)
    with QueryClient(url, token=TOKEN, timeout=5) as client:
        _wait_for("5 keys", 40, lambda: len(list(client.entries(STORE))) == 5)
    application = topics["PROCESSOR_APPLICATION_ID"]
    for name in list(os.environ):
        if name.startswith("PROCESSOR_"):
            monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        monkeypatch.setenv("PROCESSOR_HTTP_TOKEN", TOKEN)
        options = ["--bootstrap-servers", kafka_bootstrap]
        assert main(["query", application, STORE, "k3", *options]) == 0
        assert capsys.readouterr().out == '"1"\n'
        assert main(["query", application, STORE, "k9", *options]) == 1
        assert "key 'k9' is not in store 'counts'" in capsys.readouterr().err
        assert main(["query", application, STORE, "--limit", "2", *options]) == 0
        assert (
            capsys.readouterr().out == '{"key": "k0", "value": "1"}\n{"key": "k1", "value": "1"}\n'
        )
        monkeypatch.setenv("PROCESSOR_BOOTSTRAP_SERVERS", kafka_bootstrap)
        assert main(["query", url, STORE, "k3", "--token", "wrong"]) == 2
        assert "answered 401: missing or wrong bearer token" in capsys.readouterr().err
        # Found on the metadata topic, a worker is believed only with the token it signs with.
        assert main(["query", application, STORE, "k3", "--token", "wrong"]) == 2
        assert "not signed with the token given: check it" in capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_with_a_token_every_operation_needs_it(
    kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    url = _start(workers, kafka_bootstrap, topics, tmp_path, "guarded", "--http-token", TOKEN)
    good = {"authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 10
    while True:  # the port is logged just before the server accepts connections
        try:
            answer = httpx.get(f"{url}/openapi.json", headers=good, timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{url} does not accept connections"
            time.sleep(0.1)
    assert answer.status_code == 200
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=good)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "GET /v1/stores",
        "GET /v1/stores/{store}/keys/{key}",
        "POST /v1/stores/{store}/keys",
        "GET /v1/stores/{store}/entries",
        "GET /v1/metadata",
        "GET /v1/metadata/stores/{store}/keys/{key}",
        "GET /v1/lag",
    }
    refused: list[str] = []
    accepted: list[str] = []
    refused_with_token: list[str] = []

    def check(label: str, send: Callable[[dict[str, str]], int]) -> None:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            status = send(headers)
            (refused if status == 401 else accepted).append(f"{label} {headers}: {status}")
        if (status := send(good)) == 401:
            refused_with_token.append(f"{label}: {status}")

    for op in operations:
        pinned = {"store": STORE} if op.get_parameter("store", "path") else None
        if not list(op.iter_parameters()):
            case = op.Case()
            check(
                f"{op.method.upper()} {op.path}",
                lambda h, c=case: c.call(base_url=url, headers=h).status_code,
            )
            continue

        @settings(
            max_examples=5,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(path_parameters=pinned))
        def send(case: schemathesis.Case) -> None:
            check(
                _describe(case, url).split("\n")[0],
                lambda h: case.call(base_url=url, headers=h).status_code,
            )

        send()
    # Outside the document: Prometheus, the document itself, FastAPI's pages, the internal
    # fan-out endpoint and paths that do not exist.
    for path in (
        "/metrics",
        "/metrics/",
        "/openapi.json",
        "/docs",
        "/redoc",
        f"/v1/stores/{STORE}/raw-entries?tasks=0_0",
        "/nope",
    ):
        check(f"GET {path}", lambda h, p=path: httpx.get(url + p, headers=h, timeout=5).status_code)
    assert not accepted, "answered without the right token:\n" + "\n".join(accepted)
    assert not refused_with_token, "refused the right token:\n" + "\n".join(refused_with_token)
    assert len(refused) >= 3 * (len(operations) + 7)
    # With it: the document and the metrics.
    assert httpx.get(f"{url}/metrics/", headers=good, timeout=5).status_code == 200
    with QueryClient(url, token=TOKEN) as client:
        assert [s["name"] for s in client.stores()] == [STORE]
