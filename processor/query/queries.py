"""The query API's operations on one worker's stores, without HTTP (`StoreQueries`): a store by
name, a key from its text, where a key lives, and reads of keys, ranges and windows, each task
read on a copy that may answer (`processor.query.reads`) and forwarded there within the
worker's bounds (`processor.query.forwarding`, `processor.query.limits`).

Each method answers one endpoint of `processor.query.routes`, which parses the request and
renders what the method returns, a JSON-ready dict. What a request cannot have is raised:

- `HTTPException`: 404 for an unknown store or an absent key; 400 for a key or a task that is
  not one of the store's, a time range that is not one, and a read of windows in a key-value
  store or of keys in a window or session store (naming the endpoints that read it);
- `Overloaded`: over a bound (413 for too many keys, 503 otherwise), with Retry-After;
- `Unavailable`: no copy that may answer could (503, Retry-After).

Reads of store contents run on the server's threads (they wait on stores and forwards); the
listing, metadata and lag are in-memory answers, cheap wherever they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException

from processor.ids import TaskId
from processor.query.forwarding import Forwarder
from processor.query.limits import MAX_KEYS, Deadline, Overloaded, QueryLimits
from processor.query.partitioner import partition_for
from processor.query.reads import StoreReads
from processor.query.render import KeyFormatError, format_name, parse_key, render
from processor.query.source import QuerySource, StoreInfo
from processor.query.windows import MAX_TIME_MS, TimeRange, render_page

__all__ = ["StoreQueries", "key_range", "kind_of", "time_range"]


class StoreQueries:
    """What the query API does, for one worker. Owns its collaborators, built once: the source
    (the worker's stores and assignment), the limits, the forwarder (the HTTP client to the
    other instances and its bounds) and the reads (routing by task and fan-out). Thread-safe
    as they are."""

    def __init__(
        self,
        source: QuerySource,
        *,
        token: str | None,
        limits: QueryLimits | None = None,
        forwarder: Forwarder | None = None,
    ) -> None:
        self.source = source
        self.limits = limits or QueryLimits()
        self.forwarder = forwarder or Forwarder(
            instance_id=source.instance_id,
            endpoint=source.endpoint,
            token=token,
            max_forwards=self.limits.max_forwards,
        )
        self.reads = StoreReads(source, self.forwarder)

    # --- stores, keys and tasks

    def store(self, name: str) -> StoreInfo:
        """The store called `name`; 404 naming the stores there are when there is none."""
        info = self.source.stores().get(name)
        if info is None:
            names = ", ".join(sorted(self.source.stores())) or "none"
            raise HTTPException(404, f"no store {name!r}; stores: {names}")
        return info

    def key_value_store(self, name: str) -> StoreInfo:
        """The key-value store called `name`; 400 pointing to the windows endpoints when it is
        a window or session store."""
        info = self.store(name)
        if kind_of(info) != "key_value":
            raise HTTPException(
                400,
                f"store {name!r} is a {kind_of(info)} store: read its windows with "
                f"GET /v1/stores/{name}/windows/{{key}}?from_ms=&to_ms=, or every key's with "
                f"GET /v1/stores/{name}/windows?from_ms=&to_ms=",
            )
        return info

    def windowed_store(self, name: str) -> StoreInfo:
        """The window or session store called `name`; 400 pointing to the key-value endpoints
        when it is a key-value store."""
        info = self.store(name)
        if kind_of(info) == "key_value":
            raise HTTPException(
                400,
                f"store {name!r} is a key-value store and holds no windows: read it with "
                f"GET /v1/stores/{name}/keys/{{key}} or GET /v1/stores/{name}/entries",
            )
        return info

    @staticmethod
    def key_bytes(info: StoreInfo, text: str) -> bytes:
        """The stored bytes of the key written as `text`; 400 when it cannot be one."""
        try:
            return parse_key(info.spec.key_serde, text)
        except KeyFormatError as e:
            raise HTTPException(400, f"key: {e}") from None

    @staticmethod
    def task_of(info: StoreInfo, key: bytes) -> TaskId:
        """The task holding `key`: the partition Kafka's default partitioner gives it."""
        return TaskId(info.subtopology, partition_for(key, info.partitions))

    @staticmethod
    def tasks_of(info: StoreInfo, store: str, listing: str) -> list[TaskId]:
        """The distinct tasks of a `tasks` parameter ("0_1,0_4"), each one of the store's."""
        wanted = sorted({TaskId.parse(t) for t in listing.split(",")})
        for task in wanted:
            if task.subtopology != info.subtopology or not 0 <= task.partition < info.partitions:
                raise HTTPException(400, f"task {task} holds no part of store {store!r}")
        return wanted

    def deadline(self) -> Deadline:
        """The deadline of a request starting now (`query_timeout_ms`)."""
        return Deadline(self.limits.timeout_s)

    # --- in-memory answers

    def stores(self) -> dict[str, Any]:
        return {
            "instance": self.source.instance_id,
            "stores": [
                {
                    "name": name,
                    "kind": kind_of(info),
                    "partitions": info.partitions,
                    "key_format": format_name(info.spec.key_serde),
                    "value_format": format_name(info.spec.value_serde),
                    **(
                        {"ttl_ms": info.spec.ttl_ms, "ttl_clock": info.spec.ttl_clock}
                        if info.spec.ttl_ms
                        else {}
                    ),
                }
                for name, info in sorted(self.source.stores().items())
            ],
        }

    def metadata(self) -> dict[str, Any]:
        return {"instance": self.source.instance_id, "instances": self.source.instances()}

    def key_metadata(self, store: str, key: str) -> dict[str, Any]:
        """Where `key` lives: its partition and task, the active instance and its endpoint, and
        the standbys."""
        info = self.store(store)
        task = self.task_of(info, self.key_bytes(info, key))
        owners = self.source.owners(task)
        return {
            "store": store,
            "partition": task.partition,
            "task": str(task),
            "active": owners.active,
            "active_endpoint": self.source.endpoint(owners.active) if owners.active else None,
            "standbys": list(owners.standbys),
        }

    def lag(self) -> dict[str, Any]:
        return {"instance": self.source.instance_id, "tasks": self.source.lags()}

    # --- reads of store contents

    def get(
        self, store: str, key: str, *, stale: bool, prefer_local: bool, forwarded: bool
    ) -> dict[str, Any]:
        """One key's answer (`StoreReads.keys`); 404 naming the task and who answered when the
        key is absent."""
        info = self.key_value_store(store)
        (result,) = self.reads.keys(
            store,
            info,
            [(key, self.key_bytes(info, key))],
            stale=stale,
            prefer_local=prefer_local,
            forwarded=forwarded,
            deadline=self.deadline(),
        )
        if not result["found"]:
            raise HTTPException(
                404,
                f"key {key!r} is not in store {store!r} "
                f"(task {result['task']}, answered by {result['answered_by']})",
            )
        return result

    def get_many(
        self,
        store: str,
        keys: Sequence[str],
        *,
        stale: bool,
        prefer_local: bool,
        forwarded: bool,
    ) -> dict[str, Any]:
        """`{"results": [...]}`, one answer per key in order, absent keys included; 413 for more
        than `MAX_KEYS` keys."""
        if len(keys) > MAX_KEYS:
            raise Overloaded(
                f"{len(keys)} keys in one request; the query API takes at most {MAX_KEYS}: "
                f"send them in batches of {MAX_KEYS} (QueryClient.get_many does)",
                limit="max_keys",
                status=413,
            )
        info = self.key_value_store(store)
        results = self.reads.keys(
            store,
            info,
            [(text, self.key_bytes(info, text)) for text in keys],
            stale=stale,
            prefer_local=prefer_local,
            forwarded=forwarded,
            deadline=self.deadline(),
        )
        return {"results": results}

    def entries(
        self,
        store: str,
        *,
        start: str | None,
        end: str | None,
        prefix: str | None,
        after: str | None,
        limit: int,
        stale: bool,
        local_only: bool,
        tasks: str | None,
    ) -> dict[str, Any]:
        """A page of entries in key order: from `start` (inclusive) to `end` (exclusive), with
        `prefix`, after the key `after` (hex), at most `limit`; `next` is the cursor of the page
        after it (None: the last page). `local_only` reads the copies here only: of `tasks`
        ("0_1,0_4") when given, otherwise of every task of the store."""
        info = self.key_value_store(store)
        low, high = key_range(
            self.key_bytes(info, start) if start is not None else None,
            self.key_bytes(info, end) if end is not None else None,
            self.key_bytes(info, prefix) if prefix is not None else None,
            bytes.fromhex(after) if after is not None else None,
        )
        wanted = (
            self.tasks_of(info, store, tasks)
            if tasks and local_only
            else [TaskId(info.subtopology, p) for p in range(info.partitions)]
        )
        merged, where = self.reads.entries(
            store,
            info,
            wanted,
            low,
            high,
            limit,
            stale=stale,
            local_only=local_only,
            deadline=self.deadline(),
        )
        return {
            "entries": [
                {"key": render(info.spec.key_serde, k), "value": render(info.spec.value_serde, v)}
                for k, v in merged
            ],
            "next": merged[-1][0].hex() if len(merged) == limit else None,
            "tasks": where,
            "stale": any(w["role"] != "active" for w in where.values()),
        }

    def raw_entries(
        self,
        store: str,
        *,
        tasks: str,
        low: str | None,
        high: str | None,
        limit: int,
        stale: bool,
    ) -> dict[str, Any]:
        """The part of this instance in another's fan-out: the first `limit` entries of `tasks`
        held here with `low <= key < high` (hex), as hex bytes, and who answered per task."""
        info = self.key_value_store(store)
        entries, where = self.reads.entries(
            store,
            info,
            self.tasks_of(info, store, tasks),
            bytes.fromhex(low) if low is not None else None,
            bytes.fromhex(high) if high is not None else None,
            limit,
            stale=stale,
            local_only=True,
            deadline=self.deadline(),
        )
        return {"entries": [(k.hex(), v.hex()) for k, v in entries], "tasks": where}

    # --- windows (processor.query.windows)

    def windows(
        self,
        store: str,
        key: str,
        *,
        from_ms: int | None,
        to_ms: int | None,
        after: str | None,
        limit: int,
        stale: bool,
        prefer_local: bool,
        forwarded: bool,
    ) -> dict[str, Any]:
        """A page of `key`'s windows in the time range (by start for a window store, by
        overlap for a session store), read on the copy of its task that may answer, like a key
        lookup; an empty list when it has none. `next` continues after the page (None: the
        last page)."""
        info = self.windowed_store(store)
        raw = self.key_bytes(info, key)
        selected = time_range(info, from_ms, to_ms)
        low, high = selected.bounds(raw)
        task = self.task_of(info, raw)
        page, where = self.reads.windows(
            store,
            [task],
            _resume(low, after),
            high,
            selected,
            limit,
            stale=stale,
            prefer_local=prefer_local,
            only_here=forwarded,
            deadline=self.deadline(),
        )
        answered = where[str(task)]
        return {
            "key": render(info.spec.key_serde, raw),
            "from_ms": selected.from_ms,
            "to_ms": selected.to_ms,
            "windows": render_page(page, info.spec.key_serde, info.spec.value_serde),
            "next": page.horizon.hex() if page.horizon is not None else None,
            "partition": task.partition,
            "task": str(task),
            "answered_by": answered["answered_by"],
            "role": answered["role"],
            "stale": answered["role"] != "active",
            "lag": answered["lag"],
        }

    def all_windows(
        self,
        store: str,
        *,
        from_ms: int | None,
        to_ms: int | None,
        after: str | None,
        limit: int,
        stale: bool,
        forwarded: bool,
    ) -> dict[str, Any]:
        """A page of every key's windows in the time range, from every task (a fan-out like
        `entries`), in stored order: key length, key bytes, start, end."""
        info = self.windowed_store(store)
        selected = time_range(info, from_ms, to_ms)
        low, high = selected.bounds(None)
        page, where = self.reads.windows(
            store,
            [TaskId(info.subtopology, p) for p in range(info.partitions)],
            _resume(low, after),
            high,
            selected,
            limit,
            stale=stale,
            prefer_local=False,
            only_here=forwarded,
            deadline=self.deadline(),
        )
        return {
            "from_ms": selected.from_ms,
            "to_ms": selected.to_ms,
            "windows": render_page(page, info.spec.key_serde, info.spec.value_serde),
            "next": page.horizon.hex() if page.horizon is not None else None,
            "tasks": where,
            "stale": any(w["role"] != "active" for w in where.values()),
        }

    def raw_windows(
        self,
        store: str,
        *,
        tasks: str,
        low: str | None,
        high: str | None,
        from_ms: int,
        to_ms: int,
        limit: int,
        stale: bool,
    ) -> dict[str, Any]:
        """The part of this instance in another's read of windows: a `Part` of `tasks` held
        here, as hex bytes, and who answered per task."""
        info = self.windowed_store(store)
        selected = time_range(info, from_ms, to_ms)
        everything_low, everything_high = selected.bounds(None)
        page, where = self.reads.windows(
            store,
            self.tasks_of(info, store, tasks),
            bytes.fromhex(low) if low is not None else everything_low,
            bytes.fromhex(high) if high is not None else everything_high,
            selected,
            limit,
            stale=stale,
            prefer_local=False,
            only_here=True,
            deadline=self.deadline(),
        )
        return {
            "entries": [(k.hex(), v.hex()) for k, v in page.entries],
            "horizon": page.horizon.hex() if page.horizon is not None else None,
            "tasks": where,
        }


def kind_of(info: StoreInfo) -> str:
    """The store's kind as the API names it: key_value, window or session."""
    return info.spec.kind.value


def time_range(info: StoreInfo, from_ms: int | None, to_ms: int | None) -> TimeRange:
    """The range `[from_ms, to_ms]` (unbounded where None) in a windowed store; 400 when it is
    not one."""
    try:
        return TimeRange(
            0 if from_ms is None else from_ms,
            MAX_TIME_MS if to_ms is None else to_ms,
            kind_of(info),
        )
    except ValueError as e:
        raise HTTPException(400, str(e)) from None


def _resume(low: bytes, after: str | None) -> bytes:
    """Where a page starts: at `low`, or right after the cursor `after` (hex) when later."""
    return low if after is None else max(low, bytes.fromhex(after) + b"\x00")


def key_range(
    start: bytes | None, end: bytes | None, prefix: bytes | None, after: bytes | None
) -> tuple[bytes | None, bytes | None]:
    """The serialized keys `low <= key < high` (None: unbounded) that are at least `start`,
    below `end`, start with `prefix` and come after `after`."""
    low, high = start, end
    if prefix is not None:
        low = max(low, prefix) if low is not None else prefix
        successor = _successor(prefix)
        high = (
            min(high, successor)
            if high is not None and successor is not None
            else (high if successor is None else successor)
        )
    if after is not None:
        resume = after + b"\x00"
        low = max(low, resume) if low is not None else resume
    return low, high


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: none)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
