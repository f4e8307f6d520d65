"""The served API's bounds (`build_app` under uvicorn on a free port, over the in-memory fake
worker of test_client): reads beyond `query_max_requests` are refused at once with 503 and
Retry-After while the store listing and metadata still answer, and more keys than a batch is a
413 naming the limit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from processor.ids import TaskId
from processor.query.limits import QueryLimits
from processor.query.server import QueryServer, build_app
from processor.query.source import LocalRead
from processor.state.backend import TaskStateBackend
from tests.unit.query.test_client import BY_ID, COUNTS, FakeWorker


class StallingWorker(FakeWorker):
    """Reads wait for `release` once `stall` is set."""

    def __init__(self) -> None:
        super().__init__({"counts": COUNTS, "by-id": BY_ID})
        self.stall = threading.Event()
        self.stalled = threading.Event()
        self.release = threading.Event()

    def read_local(
        self, task: TaskId, read: Callable[[TaskStateBackend], Any], *, standby: bool
    ) -> LocalRead | None:
        if self.stall.is_set():
            self.stalled.set()
            self.release.wait(10)
        return super().read_local(task, read, standby=standby)


@pytest.fixture
def served() -> Iterator[tuple[str, StallingWorker]]:
    worker = StallingWorker()
    server = QueryServer(
        build_app(worker, token=None, limits=QueryLimits(max_requests=1)), "127.0.0.1", 0
    )
    worker.endpoint_url = f"http://127.0.0.1:{server.port}"
    try:
        yield worker.endpoint_url, worker
    finally:
        worker.release.set()
        server.close()


def test_a_read_beyond_the_limit_is_refused_at_once_and_cheap_endpoints_still_answer(
    served: tuple[str, StallingWorker],
) -> None:
    url, worker = served
    worker.stall.set()
    first = threading.Thread(target=httpx.get, args=(f"{url}/v1/stores/counts/keys/user-01",))
    first.start()
    try:
        assert worker.stalled.wait(5)
        refused = httpx.get(f"{url}/v1/stores/counts/keys/user-02", timeout=2)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert body["limit"] == "query_max_requests" and body["retry_after_s"] == 1
        assert "1 reads of store contents in progress" in body["detail"]
        for path in ("/v1/stores", "/v1/metadata", "/v1/lag"):
            assert httpx.get(url + path, timeout=2).status_code == 200, path
    finally:
        worker.release.set()
        first.join(5)
    assert httpx.get(f"{url}/v1/stores/counts/keys/user-02", timeout=2).status_code == 200


def test_more_keys_than_a_batch_is_a_413_naming_the_limit(
    served: tuple[str, StallingWorker],
) -> None:
    url, _ = served
    response = httpx.post(f"{url}/v1/stores/counts/keys", json={"keys": ["k"] * 10_001})
    assert response.status_code == 413
    body = response.json()
    assert body["limit"] == "max_keys"
    assert "10001 keys in one request" in body["detail"] and "batches of 10000" in body["detail"]
