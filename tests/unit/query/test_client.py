"""`QueryClient` and `processor query` against the real query API (`build_app`, served by uvicorn
on a free port) over an in-memory fake of a worker: one instance holding every task."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from processor.cli import main
from processor.errors import ProcessorError
from processor.ids import TaskId
from processor.query import client as client_module
from processor.query.client import QueryClient, QueryError, QueryNotFoundError
from processor.query.partitioner import partition_for
from processor.query.server import MAX_KEY_CHARS, QueryServer, build_app
from processor.query.source import LocalRead, Owners, StoreInfo
from processor.serdes import IntSerde, JsonSerde, Serde, StringSerde
from processor.state.backend import TaskStateBackend
from processor.state.memory import InMemoryBackend
from processor.topology.graph import StoreSpec

PARTITIONS = 3
TOKEN = "s3cret"
# Keys that are awkward in a URL path: the client must send each as one path segment.
ODD_KEYS = ["", "a/b", ".", "..", "x/../y", "100%", "q?x=1", "h#f", "sp ace", "ü-ключ", "+"]
COUNTS = {
    **{f"user-{i:02d}": i for i in range(25)},
    **{f"admin-{i}": 100 + i for i in range(3)},
    **{key: 7 for key in ODD_KEYS},
}
STORES = {
    "counts": StoreInfo(StoreSpec("counts", StringSerde(), IntSerde()), 0, PARTITIONS),
    "by-id": StoreInfo(StoreSpec("by-id", IntSerde(), JsonSerde()), 1, PARTITIONS),
}
BY_ID: dict[int, Any] = {1: {"name": "one"}, 2: [1, 2], 300: None}


class FakeWorker:
    """A `QuerySource`: instance `i1` runs every task, except those in `down` (no owner, as
    during a rebalance)."""

    def __init__(self, data: Mapping[str, Mapping[Any, Any]]) -> None:
        self.endpoint_url: str | None = None
        self.down: set[TaskId] = set()
        self.backends: dict[TaskId, InMemoryBackend] = {}
        for name, info in STORES.items():
            for p in range(PARTITIONS):
                self.backends[TaskId(info.subtopology, p)] = InMemoryBackend([name])
            for key, value in data.get(name, {}).items():
                if value is None:
                    continue
                raw = _ser(info.spec.key_serde, key)
                task = TaskId(info.subtopology, partition_for(raw, PARTITIONS))
                self.backends[task].write({name: [(raw, _ser(info.spec.value_serde, value))]}, {})

    @property
    def instance_id(self) -> str:
        return "i1"

    def stores(self) -> Mapping[str, StoreInfo]:
        return STORES

    def owners(self, task: TaskId) -> Owners:
        return Owners(None if task in self.down else "i1", ())

    def endpoint(self, instance: str) -> str | None:
        return self.endpoint_url if instance == "i1" else None

    def instances(self) -> dict[str, dict[str, Any]]:
        return {
            "i1": {
                "endpoint": self.endpoint_url,
                "active_tasks": sorted(str(t) for t in self.backends),
                "standby_tasks": [],
            }
        }

    def read_local(
        self, task: TaskId, read: Callable[[TaskStateBackend], Any], *, standby: bool
    ) -> LocalRead | None:
        if standby or task in self.down or task not in self.backends:
            return None
        return LocalRead(read(self.backends[task]), "active", 0)

    def lags(self) -> dict[str, dict[str, Any]]:
        return {str(t): {"role": "active", "state": "running", "lag": 0} for t in self.backends}


def _ser(serde: Serde[Any], value: Any) -> bytes:
    data = serde.serialize(value)
    assert data is not None
    return data


def _serve(token: str | None) -> Iterator[tuple[str, FakeWorker]]:
    worker = FakeWorker({"counts": COUNTS, "by-id": BY_ID})
    server = QueryServer(build_app(worker, token=token), "127.0.0.1", 0)
    worker.endpoint_url = f"http://127.0.0.1:{server.port}"
    try:
        yield worker.endpoint_url, worker
    finally:
        server.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, FakeWorker]]:
    yield from _serve(None)


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[str, FakeWorker]]:
    yield from _serve(TOKEN)


@pytest.fixture
def url(served: tuple[str, FakeWorker]) -> str:
    return served[0]


@pytest.fixture
def worker(served: tuple[str, FakeWorker]) -> Iterator[FakeWorker]:
    yield served[1]
    served[1].down.clear()


@pytest.fixture
def client(url: str) -> Iterator[QueryClient]:
    with QueryClient(url) as client:
        yield client


def _in_key_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


# -- single keys ---------------------------------------------------------------------------------


def test_get_returns_the_value_as_the_api_shows_it(client: QueryClient) -> None:
    assert client.get("counts", "user-07") == "7"  # an int store's values are shown as text
    assert client.get("by-id", "1") == {"name": "one"}  # a JSON store's values as JSON
    assert client.get("by-id", " 2 ") == [1, 2]


def test_get_entry_is_the_whole_answer(client: QueryClient) -> None:
    entry = client.get_entry("counts", "admin-1")
    raw = _ser(StringSerde(), "admin-1")
    assert entry == {
        "key": "admin-1",
        "found": True,
        "value": "101",
        "partition": partition_for(raw, PARTITIONS),
        "task": f"0_{partition_for(raw, PARTITIONS)}",
        "answered_by": "i1",
        "role": "active",
        "stale": False,
        "lag": 0,
    }


@pytest.mark.parametrize("key", ODD_KEYS)
def test_keys_that_are_awkward_in_a_url_are_sent_as_they_are(client: QueryClient, key: str) -> None:
    entry = client.get_entry("counts", key)
    assert (entry["key"], entry["value"]) == (key, "7")
    assert client.key_metadata("counts", key)["partition"] == partition_for(
        key.encode(), PARTITIONS
    )


def test_an_absent_key_raises_key_error_with_the_servers_detail(client: QueryClient) -> None:
    with pytest.raises(KeyError) as caught:
        client.get("counts", "nobody")
    error = caught.value
    assert isinstance(error, QueryNotFoundError) and isinstance(error, QueryError)
    assert isinstance(error, ProcessorError)
    assert error.status == 404
    assert "'nobody' is not in store 'counts'" in str(error)
    assert "404" in str(error)
    assert str(error) == error.args[0]  # not quoted the way KeyError shows a key


def test_an_unknown_store_is_a_404_naming_the_stores(client: QueryClient) -> None:
    with pytest.raises(KeyError, match=r"no store 'nope'; stores: by-id, counts"):
        client.get("nope", "k")


def test_errors_carry_status_and_detail(client: QueryClient) -> None:
    with pytest.raises(QueryError) as caught:
        client.get("by-id", "not-an-int")
    assert not isinstance(caught.value, KeyError)
    assert caught.value.status == 400
    assert "400" in str(caught.value)
    assert "key: 'not-an-int' is not an integer" in str(caught.value)
    assert caught.value.detail == "key: 'not-an-int' is not an integer (the store's keys are ints)"


def test_validation_errors_are_shown_on_one_line(client: QueryClient) -> None:
    with pytest.raises(QueryError) as caught:
        list(client.entries("counts", prefix="x" * (MAX_KEY_CHARS + 1)))
    assert caught.value.status == 422
    assert f"query.prefix: String should have at most {MAX_KEY_CHARS} characters" in str(
        caught.value
    )
    assert "\n" not in str(caught.value)


def test_an_unavailable_task_is_a_503_with_the_reason_and_when_to_retry(
    client: QueryClient, worker: FakeWorker
) -> None:
    raw = _ser(StringSerde(), "user-01")
    worker.down.add(TaskId(0, partition_for(raw, PARTITIONS)))
    with pytest.raises(QueryError) as caught:
        client.get("counts", "user-01")
    assert caught.value.status == 503
    assert "has no owner right now (a rebalance is under way)" in str(caught.value)
    assert "pass stale=true" in str(caught.value)
    assert caught.value.retry_after == 2


def test_an_unreachable_worker_is_a_query_error_without_status() -> None:
    with QueryClient("http://127.0.0.1:9", timeout=2) as client, pytest.raises(QueryError) as e:
        client.stores()
    assert e.value.status is None
    assert "GET http://127.0.0.1:9/v1/stores failed: ConnectError" in str(e.value)


def test_a_url_must_be_http() -> None:
    with pytest.raises(QueryError, match="must start with http:// or https://"):
        QueryClient("127.0.0.1:8080")


# -- many keys -----------------------------------------------------------------------------------


def test_get_many_returns_the_present_keys_only(client: QueryClient) -> None:
    keys = ["user-03", "nobody", "admin-2", "a/b", "user-03"]
    assert client.get_many("counts", keys) == {"user-03": "3", "admin-2": "102", "a/b": "7"}
    assert client.get_many("by-id", ["1", "300", "2"]) == {"1": {"name": "one"}, "2": [1, 2]}
    assert client.get_many("counts", []) == {}


def test_get_many_sends_batches(client: QueryClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_KEYS_PER_REQUEST", 4)
    sent: list[int] = []
    request = client._request

    def counting(method: str, path: str, **kwargs: Any) -> Any:
        sent.append(len(kwargs["json"]["keys"]))
        return request(method, path, **kwargs)

    monkeypatch.setattr(client, "_request", counting)
    keys = [f"user-{i:02d}" for i in range(0, 30, 3)] + ["missing"]
    found = client.get_many("counts", keys)
    assert sent == [4, 4, 3]
    assert found == {f"user-{i:02d}": str(i) for i in range(0, 30, 3) if i < 25}


def test_the_server_refuses_more_keys_than_a_batch_naming_the_limit(url: str) -> None:
    with QueryClient(url) as client, pytest.raises(QueryError) as caught:
        client._request("POST", "/v1/stores/counts/keys", json={"keys": ["k"] * 10_001})
    assert caught.value.status == 413
    assert "at most 10000" in str(caught.value) and "batches" in str(caught.value)


# -- ranges --------------------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 2, 7, 1000])
def test_entries_follow_the_cursor_and_return_every_key_once_in_order(
    client: QueryClient, monkeypatch: pytest.MonkeyPatch, page_size: int
) -> None:
    pages = 0
    request = client._request

    def counting(method: str, path: str, **kwargs: Any) -> Any:
        nonlocal pages
        pages += 1
        return request(method, path, **kwargs)

    monkeypatch.setattr(client, "_request", counting)
    got = list(client.entries("counts", page_size=page_size))
    assert [k for k, _ in got] == _in_key_order(list(COUNTS))
    assert dict(got) == {k: str(v) for k, v in COUNTS.items()}
    assert pages >= len(COUNTS) // page_size  # paged, not read at once


def test_entries_with_a_prefix(client: QueryClient) -> None:
    got = list(client.entries("counts", prefix="admin-", page_size=2))
    assert got == [("admin-0", "100"), ("admin-1", "101"), ("admin-2", "102")]
    assert list(client.entries("counts", prefix="zzz")) == []


def test_entries_between_start_and_end(client: QueryClient) -> None:
    got = [k for k, _ in client.entries("counts", start="user-05", end="user-09", page_size=3)]
    assert got == ["user-05", "user-06", "user-07", "user-08"]
    got = [k for k, _ in client.entries("counts", prefix="user-1", start="user-15", page_size=2)]
    assert got == [f"user-{i}" for i in range(15, 20)]


def test_entries_of_an_int_store_are_in_the_order_of_their_bytes(client: QueryClient) -> None:
    assert list(client.entries("by-id", page_size=1)) == [
        ("1", {"name": "one"}),
        ("2", [1, 2]),
    ]


def test_entries_page_size_is_checked(client: QueryClient) -> None:
    with pytest.raises(ValueError, match="page_size must be 1-10000"):
        next(client.entries("counts", page_size=0))


def test_entries_of_an_unknown_store(client: QueryClient) -> None:
    with pytest.raises(QueryNotFoundError, match="no store 'nope'"):
        list(client.entries("nope"))


# -- metadata ------------------------------------------------------------------------------------


def test_stores_metadata_and_lag(client: QueryClient, url: str) -> None:
    assert client.stores() == [
        {
            "name": "by-id",
            "kind": "key_value",
            "partitions": 3,
            "key_format": "text",
            "value_format": "json",
        },
        {
            "name": "counts",
            "kind": "key_value",
            "partitions": 3,
            "key_format": "text",
            "value_format": "text",
        },
    ]
    metadata = client.metadata()
    assert metadata["instance"] == "i1"
    assert metadata["instances"]["i1"]["endpoint"] == url
    where = client.key_metadata("counts", "user-01")
    assert where["active"] == "i1" and where["active_endpoint"] == url
    assert where["standbys"] == []
    assert set(client.lag()["tasks"]) == {f"{s}_{p}" for s in (0, 1) for p in range(PARTITIONS)}


# -- the bearer token ----------------------------------------------------------------------------


def test_a_token_is_required_when_the_worker_has_one(guarded: tuple[str, FakeWorker]) -> None:
    url = guarded[0]
    for token in (None, "wrong"):
        with QueryClient(url, token=token) as client, pytest.raises(QueryError) as caught:
            client.get("counts", "user-01")
        assert caught.value.status == 401
        assert "missing or wrong bearer token" in str(caught.value)
    with QueryClient(url, token=TOKEN) as client:
        assert client.get("counts", "user-01") == "1"
        assert client.get_many("counts", ["user-02"]) == {"user-02": "2"}
        assert len(list(client.entries("counts", page_size=5))) == len(COUNTS)


# -- processor query -----------------------------------------------------------------------------


def test_cli_prints_a_keys_value_as_json(
    cli_environment: None, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", url, "counts", "user-04"]) == 0
    assert capsys.readouterr() == ('"4"\n', "")
    assert main(["query", url + "/", "by-id", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "one"}


def test_cli_exits_1_for_an_absent_key(
    cli_environment: None, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", url, "counts", "nobody"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "key 'nobody' is not in store 'counts'" in err


def test_cli_exits_2_for_an_unknown_store(
    cli_environment: None, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", url, "nope", "k"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "processor query: no store 'nope'; stores: by-id, counts\n"
    assert main(["query", url, "nope"]) == 2
    assert "no store 'nope'" in capsys.readouterr().err


def test_cli_lists_entries_as_json_lines(
    cli_environment: None, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", url, "counts", "--prefix", "admin-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"key": f"admin-{i}", "value": str(100 + i)} for i in range(3)
    ]
    assert main(["query", url, "counts", "--limit", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["key"] for line in lines] == _in_key_order(list(COUNTS))[:4]
    assert main(["query", url, "counts"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(COUNTS)


def test_cli_errors_are_one_line_and_exit_2(
    cli_environment: None, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cases: list[tuple[list[str], str]] = [
        (["query", "http://127.0.0.1:9", "counts", "k"], "failed: ConnectError"),
        (["query", url, "by-id", "x"], "answered 400: key: 'x' is not an integer"),
        (["query", url, "counts", "k", "--prefix", "a"], "give them without KEY"),
        (["query", url, "counts", "--limit", "0"], "--limit must be at least 1"),
        (["query", "my-app", "counts"], "give --bootstrap-servers or set"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == ""
        assert err.startswith("processor query: ") and err.count("\n") == 1, err
        assert message in err


def test_cli_sends_the_token_from_the_environment(
    cli_environment: None,
    guarded: tuple[str, FakeWorker],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = guarded[0]
    assert main(["query", url, "counts", "user-01"]) == 2
    assert "answered 401: missing or wrong bearer token" in capsys.readouterr().err
    assert main(["query", url, "counts", "user-01", "--token", TOKEN]) == 0
    assert capsys.readouterr().out == '"1"\n'
    monkeypatch.setenv("PROCESSOR_HTTP_TOKEN", TOKEN)
    assert main(["query", url, "counts", "user-01"]) == 0
    assert capsys.readouterr().out == '"1"\n'
