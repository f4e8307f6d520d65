"""A Confluent-compatible schema registry client. The only module touching
`confluent_kafka.schema_registry`.

`SchemaRegistry` is the small interface the Confluent serdes in `processor.serdes` use
(`register`, `lookup`, `schema_by_id`); it speaks Confluent's REST API, which Confluent Schema
Registry, Apicurio Registry (under `/apis/ccompat/v7`), Karapace and Redpanda serve. Its errors:

```
ProcessorError
└── SchemaRegistryError                 a registry request failed (names the URL)
    ├── SchemaRegistryUnavailableError  the registry cannot be reached, or failed (5xx)
    ├── SchemaNotFoundError             no such schema id, or the schema is not under the subject
    └── SchemaRejectedError             the registry refused to register a schema (invalid, or
                                        incompatible with the subject's earlier versions)
```
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry import SchemaRegistryError as _ClientError

from processor.errors import ProcessorError, TransientError

__all__ = [
    "SchemaNotFoundError",
    "SchemaRegistry",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError",
    "SchemaRejectedError",
]


class SchemaRegistryError(ProcessorError):
    """A schema registry request failed. `url` is the registry's; `status` and `error_code` are
    the HTTP status and the registry's error code when it answered (else None)."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int | None = None,
        error_code: int | None = None,
    ) -> None:
        self.url = url
        self.status = status
        self.error_code = error_code
        super().__init__(message)


class SchemaRegistryUnavailableError(SchemaRegistryError, TransientError):
    """The registry cannot be reached (refused, timed out, DNS) or answered with a server error.
    Retrying later may succeed."""


class SchemaNotFoundError(SchemaRegistryError):
    """The registry has no schema with this id, or the schema is not registered under the
    subject."""


class SchemaRejectedError(SchemaRegistryError):
    """The registry refused to register a schema: it is invalid, or incompatible with the
    versions already under the subject (per the subject's compatibility setting)."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    # confluent_kafka's REST client lets its HTTP library's transport errors through as they are
    # (httpx2 in recent releases, httpx in older ones); catch whichever is installed.
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()


class SchemaRegistry:
    """A Confluent-compatible schema registry at `url`, e.g. `http://127.0.0.1:8081` or, for
    Apicurio Registry, `http://host:8080/apis/ccompat/v7`.

    Keyword arguments:
        timeout: seconds one HTTP request may take (default 10).
        max_retries: retries of a request that failed to connect or got a retriable status
            (408, 429, 5xx), with exponential backoff from `retry_backoff` seconds (default 3).
        retry_backoff: the first retry's wait in seconds (default 0.25).
        config: further `SchemaRegistryClient` settings, e.g. `basic.auth.user.info` or
            `ssl.ca.location`.

    Schemas are cached by id and by (subject, schema), so the registry is asked once for each.
    Every failure raises a `SchemaRegistryError` naming the URL and the subject or id.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        retry_backoff: float = 0.25,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        settings: dict[str, Any] = {
            "url": self.url,
            "timeout": timeout,
            "max.retries": max_retries,
            "retries.wait.ms": int(retry_backoff * 1000),
            **(config or {}),
        }
        try:
            self._client = SchemaRegistryClient(settings)
        except (ValueError, TypeError) as e:
            raise SchemaRegistryError(
                f"schema registry at {self.url}: invalid client settings: {e}", url=self.url
            ) from e

    def __repr__(self) -> str:
        return f"SchemaRegistry({self.url!r})"

    def register(self, subject: str, schema_str: str, *, schema_type: str = "AVRO") -> int:
        """Register `schema_str` under `subject` (or find it there, if it is registered
        already) and return its schema id."""
        try:
            schema_id = self._client.register_schema(subject, Schema(schema_str, schema_type))
        except Exception as e:
            raise self._translate(e, f"registering a schema under subject {subject!r}") from e
        return int(schema_id)

    def lookup(self, subject: str, schema_str: str, *, schema_type: str = "AVRO") -> int:
        """The id of `schema_str` as registered under `subject`, without registering it."""
        try:
            registered = self._client.lookup_schema(subject, Schema(schema_str, schema_type))
        except Exception as e:
            raise self._translate(e, f"looking up a schema under subject {subject!r}") from e
        if registered.schema_id is None:
            raise SchemaRegistryError(
                f"schema registry at {self.url} answered a lookup under subject {subject!r} "
                "without a schema id",
                url=self.url,
            )
        return int(registered.schema_id)

    def schema_by_id(self, schema_id: int) -> str:
        """The text of the schema with id `schema_id`."""
        try:
            schema = self._client.get_schema(schema_id)
        except Exception as e:
            raise self._translate(e, f"fetching schema id {schema_id}", schema_id=schema_id) from e
        text = schema.schema_str
        if not isinstance(text, str):
            raise SchemaRegistryError(
                f"schema registry at {self.url} returned no schema text for schema id {schema_id}",
                url=self.url,
            )
        return text

    def set_compatibility(self, subject: str, level: str) -> None:
        """Set `subject`'s compatibility level: BACKWARD, FORWARD, FULL, NONE (and their
        _TRANSITIVE forms)."""
        try:
            self._client.set_compatibility(subject_name=subject, level=level)
        except Exception as e:
            raise self._translate(e, f"setting the compatibility of subject {subject!r}") from e

    def close(self) -> None:
        """Close the HTTP connections. Safe to call more than once."""
        # close() is recent; __exit__ (which closes) is in every release.
        self._client.__exit__(None, None, None)  # type: ignore[no-untyped-call]

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _translate(
        self, error: Exception, action: str, *, schema_id: int | None = None
    ) -> SchemaRegistryError:
        url = self.url
        if isinstance(error, _TRANSPORT_ERRORS):
            return SchemaRegistryUnavailableError(
                f"schema registry at {url} cannot be reached while {action} "
                f"({type(error).__name__}: {error}); check the URL and that the registry is up",
                url=url,
            )
        if not isinstance(error, _ClientError):
            return SchemaRegistryError(
                f"schema registry at {url}: {action} failed ({type(error).__name__}: {error})",
                url=url,
            )
        status, code = error.http_status_code, error.error_code
        detail = f"HTTP {status}, error code {code}: {error.error_message}"
        kind: type[SchemaRegistryError]
        if status == 404 and schema_id is not None:
            kind, message = (
                SchemaNotFoundError,
                f"schema id {schema_id} unknown to the registry at {url} ({detail})",
            )
        elif status == 404:
            kind, message = (
                SchemaNotFoundError,
                f"schema registry at {url}: nothing found while {action} ({detail}); register "
                "the schema first, or let the serde register it",
            )
        elif status == 409:
            kind, message = (
                SchemaRejectedError,
                f"schema registry at {url} refused {action}: the schema is incompatible with the "
                f"subject's earlier versions ({detail})",
            )
        elif status == 422:
            kind, message = (
                SchemaRejectedError,
                f"schema registry at {url} refused {action}: the schema is invalid ({detail})",
            )
        elif status >= 500 or status in (408, 429):
            kind, message = (
                SchemaRegistryUnavailableError,
                f"schema registry at {url} failed while {action} ({detail})",
            )
        else:
            kind, message = (
                SchemaRegistryError,
                f"schema registry at {url} refused {action} ({detail})",
            )
        return kind(message, url=url, status=status, error_code=code)
