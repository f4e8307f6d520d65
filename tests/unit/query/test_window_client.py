"""`QueryClient.windows`, `QueryClient.all_windows` and `processor query` on windowed stores,
against the real query API (served by uvicorn on a free port) over one instance holding every
task of `test_window_queries`' stores."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from processor.cli import main
from processor.query.client import QueryClient, QueryError
from processor.query.server import QueryServer, build_app
from processor.query.source import Owners
from tests.unit.query.test_window_queries import (
    KEYS,
    MINUTE,
    TASKS,
    Instance,
    backends,
    expected_minutes,
)

TOKEN = "s3cret"


@pytest.fixture(scope="module", params=[None, TOKEN], ids=["open", "token"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    instance = Instance("i1", backends())
    instance.table = {t: Owners("i1", ()) for t in TASKS}
    server = QueryServer(build_app(instance, token=request.param), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.port}", request.param
    finally:
        server.close()


@pytest.fixture
def client(served: tuple[str, str | None]) -> Iterator[QueryClient]:
    with QueryClient(served[0], token=served[1]) as client:
        yield client


def test_a_keys_windows_in_a_time_range(client: QueryClient) -> None:
    key = KEYS[-1]
    windows = client.windows("per-minute", key, from_ms=3 * MINUTE, to_ms=5 * MINUTE)
    assert [(w["key"], w["start_ms"], w["end_ms"]) for w in windows] == [
        (key, s, s + MINUTE) for s in (3 * MINUTE, 4 * MINUTE, 5 * MINUTE)
    ]
    all_of_it = client.windows("per-minute", key, page_size=2)
    assert [(w["start_ms"], int(w["value"])) for w in all_of_it] == expected_minutes(key)
    assert client.windows("per-minute", "nobody") == []
    sessions = client.windows("sessions", key, from_ms=9000)
    assert [(w["start_ms"], w["end_ms"], w["value"]) for w in sessions] == [
        (5000, 9000, {"clicks": 4000})
    ]


def test_every_keys_windows_page_lazily(client: QueryClient) -> None:
    windows = list(client.all_windows("per-minute", from_ms=MINUTE, to_ms=MINUTE, page_size=3))
    assert sorted(w["key"] for w in windows) == sorted(KEYS[1:])
    assert [w["key"] for w in windows] == sorted(KEYS[1:], key=lambda k: (len(k), k))
    assert {w["start_ms"] for w in windows} == {MINUTE}
    with pytest.raises(ValueError, match="page_size"):
        client.windows("per-minute", "k", page_size=0)


def test_the_kinds_and_the_refusals(client: QueryClient) -> None:
    kinds = {s["name"]: s["kind"] for s in client.stores()}
    assert kinds == {"counts": "key_value", "per-minute": "window", "sessions": "session"}
    with pytest.raises(QueryError) as refused:
        client.get("per-minute", KEYS[0])
    assert refused.value.status == 400 and "/windows/{key}" in str(refused.value)
    with pytest.raises(QueryError) as refused:
        client.windows("counts", KEYS[0])
    assert refused.value.status == 400 and "/keys/{key}" in str(refused.value)
    with pytest.raises(QueryError) as refused:
        client.windows("per-minute", KEYS[0], from_ms=-1)
    assert refused.value.status == 422


def test_the_token_is_required_for_windows_where_one_is_set(
    served: tuple[str, str | None],
) -> None:
    url, token = served
    with QueryClient(url) as client:
        if token is None:  # an open worker answers anyone
            assert client.windows("per-minute", KEYS[0]) is not None
            return
        with pytest.raises(QueryError) as refused:
            client.windows("per-minute", KEYS[0])
    assert refused.value.status == 401


def test_cli_prints_a_keys_windows_as_json_lines(
    cli_environment: None,
    served: tuple[str, str | None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, token = served
    auth = ["--token", token] if token else []
    key = KEYS[2]
    assert main(["query", url, "per-minute", key, "--from-ms", str(MINUTE), *auth]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {
            "key": key,
            "start_ms": s,
            "end_ms": s + MINUTE,
            "value": str(n),
            "timestamp_ms": s + 59_999,
        }
        for s, n in expected_minutes(key)[1:]
    ]
    assert main(["query", url, "per-minute", key, "--from-ms", str(10 * MINUTE), *auth]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "has no windows in store 'per-minute'" in err


def test_cli_lists_every_keys_windows_and_refuses_what_does_not_fit(
    cli_environment: None,
    served: tuple[str, str | None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, token = served
    auth = ["--token", token] if token else []
    assert main(["query", url, "sessions", "--to-ms", "0", "--limit", "5", *auth]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 5 and all(w["start_ms"] == 0 for w in lines)
    for argv, message in [
        (["counts", "--from-ms", "5"], "--from-ms and --to-ms select windows"),
        (["per-minute", "--prefix", "u"], "--prefix lists a key-value store"),
    ]:
        assert main(["query", url, *argv, *auth]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("processor query: ") and message in err
