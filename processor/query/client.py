"""A client for the query API every worker serves (`processor.query.server`).

Any worker answers for every key: it forwards a request to the instance holding the key's task,
so a client talks to one worker only. Keys are given as text, the way the API takes them (see
`GET /v1/stores`: the text itself for a string store, an integer for an int store, a JSON
document for a JSON store); values come back as the API shows them (JSON for a JSON store,
text otherwise).

```python
with QueryClient("http://127.0.0.1:8080", token=None) as client:
    client.get("counts", "alice")                # the value; KeyError when absent
    for key, value in client.entries("counts", prefix="a"):
        ...
    client.windows("clicks-per-minute", "alice", from_ms=0, to_ms=3_600_000)
    for window in client.all_windows("clicks-per-minute", from_ms=0, to_ms=3_600_000):
        ...                                      # {key, start_ms, end_ms, value, timestamp_ms}
```

`QueryClient.for_application(bootstrap_servers, application_id)` finds a worker from the
endpoints instances publish on `<application_id>-metadata`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from processor.errors import ProcessorError

__all__ = ["QueryClient", "QueryError", "QueryNotFoundError"]

# The server takes at most this many keys in one POST /v1/stores/{store}/keys and this many
# entries in one page (processor.query.limits.MAX_KEYS, processor.query.routes.MAX_LIMIT).
MAX_KEYS_PER_REQUEST = 10_000
MAX_PAGE_SIZE = 10_000
# Seconds to wait for an instance found on the metadata topic to answer.
_PROBE_TIMEOUT = 3.0


class QueryError(ProcessorError):
    """A query failed: the worker answered with an error status (`status`, the server's
    `detail`), or could not be reached or understood (`status` is None). `retry_after` is the
    seconds the worker asked to wait before trying again (503: busy, or no copy could answer
    right now), None when it did not say. The client itself never retries."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(message)


class QueryNotFoundError(QueryError, KeyError):
    """404: the key (or the store) does not exist. A `KeyError` as well as a `QueryError`."""

    def __str__(self) -> str:
        # KeyError would show the message quoted, as it shows a missing key.
        return str(self.args[0]) if self.args else ""


def _quote_segment(text: str) -> str:
    """`text` as one path segment. Dots are escaped too: httpx would resolve a key of `.` or
    `..` as a relative path segment; the server decodes `%2E` back to a dot."""
    return quote(text, safe="").replace(".", "%2E")


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header in seconds (the form the workers send); None for anything else."""
    try:
        return float(retry_after) if retry_after is not None else None
    except ValueError:
        return None


def _window_params(
    from_ms: int | None, to_ms: int | None, stale: bool, page_size: int
) -> dict[str, Any]:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}")
    params: dict[str, Any] = {"limit": page_size}
    if from_ms is not None:
        params["from_ms"] = from_ms
    if to_ms is not None:
        params["to_ms"] = to_ms
    if stale:
        params["stale"] = "true"
    return params


def _describe_detail(detail: Any) -> str:
    """The server's `detail` as one line: a message, or FastAPI's list of validation errors."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()))
                parts.append(f"{where}: {item.get('msg', item)}" if where else str(item))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


class QueryClient:
    """A synchronous client of one worker's query API. Not thread-safe beyond what
    `httpx.Client` is; use one per thread, or share it for simple calls."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise QueryError(f"worker URL {url!r} must start with http:// or https://", url=url)
        self.url = url.rstrip("/")
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    # -- finding a worker ----------------------------------------------------------------------

    @classmethod
    def for_application(
        cls,
        bootstrap_servers: str,
        application_id: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        wait: float = 5.0,
    ) -> QueryClient:
        """A client of a running worker of `application_id`, found on the compacted topic
        `<application_id>-metadata` where every instance publishes its status and endpoint.

        Reads the topic from its beginning for up to `wait` seconds. Among the instances that
        are running and have an endpoint, the most recently updated one that answers is chosen
        (a killed worker's last status still says running). With a `token`, only statuses signed
        with it count (workers sign theirs when they have one), so the token is never sent to
        an endpoint someone else published. Raises `QueryError`, naming the topic, when there
        is none, and `BrokerError` when the cluster cannot be reached."""
        # Imported here: confluent_kafka is only needed to find a worker, not to query one.
        from processor.config import metadata_topic
        from processor.query.discovery import find_endpoints

        endpoints = find_endpoints(bootstrap_servers, application_id, token=token, wait=wait)
        problems: list[str] = []
        for endpoint in endpoints:
            client = cls(endpoint, token=token, timeout=timeout)
            try:
                # A killed worker's endpoint may not even refuse: do not wait long for it.
                client._request("GET", "/v1/stores", timeout=min(timeout, _PROBE_TIMEOUT))
            except QueryError as e:
                client.close()
                if e.status is not None:
                    raise  # reachable, but refused: a wrong token, say
                problems.append(str(e))
                continue
            return client
        raise QueryError(
            f"no instance of application {application_id!r} published on topic "
            f"{metadata_topic(application_id)!r} answers: {'; '.join(problems)}",
            url=bootstrap_servers,
        )

    # -- requests --------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """The JSON answer of `method path`; raises QueryNotFoundError on 404, QueryError on
        any other error status, a transport failure or an answer that is not JSON."""
        url = self.url + path
        try:
            response = self._http.request(
                method,
                path,
                params=params,
                json=json,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as e:
            raise QueryError(
                f"{method} {url} failed: {type(e).__name__}: {e or 'no answer'}", url=url
            ) from e
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 200 and answer is not None:
            return answer
        if response.status_code == 200:
            raise QueryError(
                f"{method} {url} answered 200 with a body that is not JSON: "
                f"{response.text[:200]!r}",
                url=url,
                status=200,
            )
        detail = answer.get("detail") if isinstance(answer, dict) else None
        shown = _describe_detail(detail) if detail is not None else response.text[:200]
        message = f"{method} {url} answered {response.status_code}: {shown}"
        if response.status_code == 404:
            raise QueryNotFoundError(message, url=url, status=404, detail=detail)
        raise QueryError(
            message,
            url=url,
            status=response.status_code,
            detail=detail,
            retry_after=_seconds(response.headers.get("retry-after")),
        )

    def _store_path(self, store: str) -> str:
        return f"/v1/stores/{_quote_segment(store)}"

    def stores(self) -> list[dict[str, Any]]:
        """The application's stores: name, kind ("key_value", "window" or "session"),
        partitions, key_format and value_format."""
        stores: list[dict[str, Any]] = self._request("GET", "/v1/stores")["stores"]
        return stores

    def get_entry(self, store: str, key: str, *, stale: bool = False) -> dict[str, Any]:
        """The whole answer for one key: key, value, partition, task, answered_by, role, stale,
        lag. Raises KeyError (a `QueryNotFoundError`) when the key or the store is absent."""
        params = {"stale": "true"} if stale else None
        entry: dict[str, Any] = self._request(
            "GET", f"{self._store_path(store)}/keys/{_quote_segment(key)}", params=params
        )
        return entry

    def get(self, store: str, key: str, *, stale: bool = False) -> Any:
        """The value of `key` in `store`; raises KeyError when it is absent."""
        return self.get_entry(store, key, stale=stale)["value"]

    def get_many(self, store: str, keys: Iterable[str], *, stale: bool = False) -> dict[str, Any]:
        """The values of the keys that are present, by key as given (absent keys are left
        out). Sent in batches of at most 10,000 keys."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        path = f"{self._store_path(store)}/keys"
        for start in range(0, len(wanted), MAX_KEYS_PER_REQUEST):
            batch = wanted[start : start + MAX_KEYS_PER_REQUEST]
            results = self._request("POST", path, json={"keys": batch, "stale": stale})["results"]
            if len(results) != len(batch):
                raise QueryError(
                    f"POST {self.url}{path} answered {len(results)} results for {len(batch)} keys",
                    url=self.url + path,
                    status=200,
                )
            for key, result in zip(batch, results, strict=True):
                if result.get("found"):
                    found[key] = result.get("value")
        return found

    def entries(
        self,
        store: str,
        *,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        stale: bool = False,
        page_size: int = 1000,
    ) -> Iterator[tuple[Any, Any]]:
        """(key, value) of every entry of `store` in key order (the order of the serialized
        keys), with keys from `start` (inclusive) to `end` (exclusive) and starting with
        `prefix`, fetched `page_size` at a time, lazily."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}")
        path = f"{self._store_path(store)}/entries"
        params: dict[str, Any] = {"limit": page_size}
        if prefix is not None:
            params["prefix"] = prefix
        if start is not None:
            params["from"] = start
        if end is not None:
            params["to"] = end
        if stale:
            params["stale"] = "true"
        for page in self._pages(path, params):
            for entry in page["entries"]:
                yield entry["key"], entry["value"]

    def windows(
        self,
        store: str,
        key: str,
        *,
        from_ms: int | None = None,
        to_ms: int | None = None,
        stale: bool = False,
        page_size: int = 1000,
    ) -> list[dict[str, Any]]:
        """The windows of `key` in a window or session store in the time range `[from_ms,
        to_ms]` (inclusive; None: unbounded), each `{key, start_ms, end_ms, value,
        timestamp_ms}`, in order of start and end; an empty list when it has none. A window
        store's windows are selected by start, a session store's sessions by overlap (see the
        endpoint's description in the OpenAPI document)."""
        path = f"{self._store_path(store)}/windows/{_quote_segment(key)}"
        params = _window_params(from_ms, to_ms, stale, page_size)
        return [w for page in self._pages(path, params) for w in page["windows"]]

    def all_windows(
        self,
        store: str,
        *,
        from_ms: int | None = None,
        to_ms: int | None = None,
        stale: bool = False,
        page_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Every key's windows in the time range, like `windows`, ordered by key (the length
        of the serialized key, then its bytes), start and end, fetched a page at a time,
        lazily."""
        params = _window_params(from_ms, to_ms, stale, page_size)
        for page in self._pages(f"{self._store_path(store)}/windows", params):
            yield from page["windows"]

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        """The pages of a paged read, each continuing after the `next` cursor of the one
        before, until one has none."""
        after: str | None = None
        while True:
            page = self._request(
                "GET", path, params={**params, "after": after} if after is not None else params
            )
            yield page
            cursor = page.get("next")
            if cursor is None:
                return
            if after is not None and cursor <= after:
                raise QueryError(
                    f"GET {self.url}{path} did not advance: cursor {cursor!r} after {after!r}",
                    url=self.url + path,
                    status=200,
                )
            after = cursor

    def metadata(self) -> dict[str, Any]:
        """Instances, their endpoints and their active and standby tasks."""
        answer: dict[str, Any] = self._request("GET", "/v1/metadata")
        return answer

    def key_metadata(self, store: str, key: str) -> dict[str, Any]:
        """Where `key` lives: partition, task, active instance and its endpoint, standbys."""
        answer: dict[str, Any] = self._request(
            "GET", f"/v1/metadata/stores/{_quote_segment(store)}/keys/{_quote_segment(key)}"
        )
        return answer

    def status(self) -> dict[str, Any]:
        """Every instance with its tasks and figures, as the status page shows them
        (`processor.status.view.StatusView.from_json` reads it)."""
        answer: dict[str, Any] = self._request("GET", "/v1/status")
        return answer

    def lag(self) -> dict[str, Any]:
        """Changelog records behind, per task held by the worker asked."""
        answer: dict[str, Any] = self._request("GET", "/v1/lag")
        return answer

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QueryClient({self.url!r})"
