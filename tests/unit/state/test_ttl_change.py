"""A store whose `ttl_ms` changed between two runs of a task on the same local state: the expiry
index the first run wrote names the old expiry times, and every key still expires by the new
TTL (reads hide it from the new time; the expiry pass removes it, at the latest at the old
time)."""

from __future__ import annotations

from typing import Any

import pytest

from processor.serdes import StringSerde
from processor.state.budget import MemoryBudget
from processor.state.indexing import backend_stores
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores
from processor.state.ttl_store import TtlKeyValueStore
from processor.topology.graph import StoreSpec

STR = StringSerde()


def _run(backend: InMemoryBackend, ttl_ms: int) -> tuple[TaskStores, TtlKeyValueStore[Any, Any]]:
    spec = StoreSpec("seen", STR, STR, ttl_ms=ttl_ms)
    stores = TaskStores(
        backend, (spec,), {"seen": "app-seen-changelog"}, memory=MemoryBudget(1 << 20)
    )
    store = stores.stores["seen"]
    assert isinstance(store, TtlKeyValueStore)
    return stores, store


def _commit(stores: TaskStores) -> None:
    stores.flush(lambda _topic, _key, _value: None)
    stores.checkpoint({})


@pytest.mark.parametrize("new_ttl", [5_000, 20_000])
def test_keys_expire_by_the_new_ttl_after_it_changed(new_ttl: int) -> None:
    spec = StoreSpec("seen", STR, STR, ttl_ms=10_000)
    backend = InMemoryBackend(backend_stores([spec]))
    first, store = _run(backend, 10_000)
    store.now = lambda: 0
    store.put("k", "v")
    _commit(first)

    second, store = _run(backend, new_ttl)
    expired: list[bytes] = []
    store.on_expired = lambda key, _data: expired.append(key)
    now = 0
    store.now = lambda: now
    for now in range(0, 40_001, 1_000):
        store.expire(now, 100)
        _commit(second)
        if expired:
            break
    assert store.get("k") is None
    assert expired == [b"k"]
    assert now == max(new_ttl, 10_000)  # by the new TTL, and no later than the old one
    assert list(backend.range("seen", None, None)) == []
