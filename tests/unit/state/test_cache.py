"""`StoreCache` against a model: a dict of what the task sees and a dict of what is committed,
and the bytes it charges to its `MemoryBudget` against the sizes of the model's entries."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from processor.serdes import BytesSerde
from processor.state.backend import Change
from processor.state.budget import MemoryBudget
from processor.state.cache import ENTRY_OVERHEAD, STORE_CACHE_ACCOUNT, StoreCache
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores
from processor.topology.graph import StoreSpec

# Few keys, so that puts, deletes and reads keep hitting the same ones; with the byte edge cases.
KEYS = st.sampled_from(
    [b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"ba", b"c", b"\xff", b"\xff\xff"]
)
# Mostly small values, some as large as a third of the budget, so that entries are evicted,
# the budget fills and the dirty entries alone exceed it.
VALUES = st.one_of(st.binary(max_size=3), st.binary(min_size=100, max_size=700))
BOUNDS = st.none() | KEYS | st.binary(max_size=2)
LIMIT = 2_000
CACHES = st.sampled_from([0, 1])


def size(entries: Mapping[bytes, bytes | None]) -> int:
    return sum(len(k) + len(v or b"") + ENTRY_OVERHEAD for k, v in entries.items())


class Model:
    """What one cache's task sees, what its backend has, and what it has changed."""

    def __init__(self, cache: StoreCache, backend: InMemoryBackend) -> None:
        self.cache = cache
        self.backend = backend
        self.seen: dict[bytes, bytes] = {}  # what the task sees
        self.committed: dict[bytes, bytes] = {}  # what the backend has
        self.dirtied: dict[bytes, bytes | None] = {}  # expected next take_dirty(), in order
        self.taken: list[list[Change]] = []  # taken, not yet written
        self.offset = -1

    def unwritten(self) -> dict[bytes, bytes | None]:
        return {key: value for taken in self.taken for key, value in taken}


class CacheMachine(RuleBasedStateMachine):
    """Two caches sharing one budget: random puts, deletes, reads, range scans, commits
    (take_dirty, then write and mark_written, possibly several takes per write as under
    exactly-once) and aborts (drop), with values of random sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.budget = MemoryBudget(LIMIT)
        self.models = []
        for store in ("s", "t"):
            backend = InMemoryBackend([store])
            self.models.append(Model(StoreCache(backend, store, budget=self.budget), backend))

    @initialize(data=st.dictionaries(KEYS, VALUES), which=CACHES)
    def preload(self, data: dict[bytes, bytes], which: int) -> None:
        m = self.models[which]
        m.backend.write({m.cache.store: list(data.items())}, {})
        m.seen = dict(data)
        m.committed = dict(data)

    @rule(which=CACHES, key=KEYS, value=VALUES)
    def put(self, which: int, key: bytes, value: bytes) -> None:
        m = self.models[which]
        m.cache.put(key, value)
        m.seen[key] = value
        m.dirtied[key] = value

    @rule(which=CACHES, key=KEYS)
    def delete(self, which: int, key: bytes) -> None:
        m = self.models[which]
        m.cache.delete(key)
        m.seen.pop(key, None)
        m.dirtied[key] = None

    @rule(which=CACHES, key=KEYS, value=VALUES)
    def swap(self, which: int, key: bytes, value: bytes) -> None:
        m = self.models[which]
        old = m.cache.swap(key, value)
        assert old is None or old == m.seen.get(key)  # only what it holds in memory
        m.seen[key] = value
        m.dirtied[key] = value

    @rule(which=CACHES, key=KEYS, value=VALUES, current=st.booleans())
    def delete_if(self, which: int, key: bytes, value: bytes, current: bool) -> None:
        m = self.models[which]
        if current and key in m.seen:
            value = m.seen[key]
        deleted = m.cache.delete_if(key, value)
        assert deleted == (m.seen.get(key) == value)
        if deleted:
            del m.seen[key]
            m.dirtied[key] = None

    @rule(which=CACHES, key=KEYS)
    def get(self, which: int, key: bytes) -> None:
        m = self.models[which]
        assert m.cache.get(key) == m.seen.get(key)

    @rule(which=CACHES, start=BOUNDS, end=BOUNDS)
    def range(self, which: int, start: bytes | None, end: bytes | None) -> None:
        m = self.models[which]
        expected = sorted(
            (k, v)
            for k, v in m.seen.items()
            if (start is None or k >= start) and (end is None or k < end)
        )
        assert list(m.cache.range(start, end)) == expected

    @rule(which=CACHES)
    def take_dirty(self, which: int) -> None:
        m = self.models[which]
        changes = m.cache.take_dirty()
        assert changes == list(m.dirtied.items())  # each key once, latest, first-dirtied order
        m.dirtied = {}
        m.taken.append(changes)

    @precondition(lambda self: any(m.taken for m in self.models))
    @rule(which=CACHES)
    def write(self, which: int) -> None:
        m = self.models[which]
        changes = [change for taken in m.taken for change in taken]
        m.offset += len(changes)
        m.backend.write({m.cache.store: changes}, {"changelog": m.offset})
        m.cache.mark_written()
        for key, value in changes:
            if value is None:
                m.committed.pop(key, None)
            else:
                m.committed[key] = value
        m.taken = []
        assert dict(m.backend.range(m.cache.store)) == m.committed

    @rule()
    def commit_when_full(self) -> None:
        """What the worker does when the budget is full: every cache flushes and writes."""
        if not self.budget.is_full:
            return
        for which in (0, 1):
            self.take_dirty(which)
            self.write(which)
        assert self.budget.pinned == 0
        assert self.budget.used <= LIMIT

    @rule(which=CACHES)
    def abort(self, which: int) -> None:
        m = self.models[which]
        m.cache.drop()
        m.seen = dict(m.committed)
        m.dirtied = {}
        m.taken = []

    @invariant()
    def counts(self) -> None:
        for m in self.models:
            assert m.cache.dirty_count == len(m.dirtied)
            assert m.cache.unwritten_count == len(m.unwritten())

    @invariant()
    def bytes_are_accounted_exactly(self) -> None:
        account = self.budget.account(STORE_CACHE_ACCOUNT)
        # Pinned: the model's dirty entries and its changes taken but not written; evictable:
        # the entries the caches hold for reads.
        pinned = sum(size(m.dirtied) + size(m.unwritten()) for m in self.models)
        cached = sum(m.cache.cached_bytes for m in self.models)
        assert account.evictable == cached
        assert account.used == pinned + cached
        assert self.budget.used == account.used
        assert self.budget.pinned == pinned

    @invariant()
    def the_budget_holds(self) -> None:
        # Cached reads give way: beyond the limit there are only changes not yet written,
        # which the worker commits as soon as it sees `is_full`.
        assert self.budget.used <= LIMIT or self.budget.used == self.budget.pinned
        assert self.budget.is_full == (self.budget.pinned >= LIMIT)
        assert all(m.cache.is_full == self.budget.is_full for m in self.models)


TestStoreCache = CacheMachine.TestCase
TestStoreCache.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)


@pytest.fixture
def backend() -> InMemoryBackend:
    return InMemoryBackend(["s"])


def entry(key: bytes, value: bytes | None) -> int:
    return len(key) + len(value or b"") + ENTRY_OVERHEAD


def test_a_hot_key_is_taken_once_with_its_latest_value(backend: InMemoryBackend) -> None:
    cache = StoreCache(backend, "s")
    cache.put(b"cold", b"x")
    for i in range(10_000):
        cache.put(b"hot", b"%d" % i)
    cache.put(b"cold", b"y")
    assert cache.dirty_count == 2
    assert cache.pinned_bytes == entry(b"cold", b"y") + entry(b"hot", b"9999")
    assert cache.take_dirty() == [(b"cold", b"y"), (b"hot", b"9999")]
    assert cache.take_dirty() == []
    for i in range(10_000):
        cache.put(b"hot", b"%d" % i)
    cache.delete(b"hot")
    assert cache.take_dirty() == [(b"hot", None)]


def test_cached_reads_are_bounded_in_bytes_and_least_recently_used_goes_first(
    backend: InMemoryBackend,
) -> None:
    backend.write({"s": [(b"%04d" % i, b"v") for i in range(1000)]}, {})
    # Room for 10 entries of 4-byte keys and 1-byte values, and a few bytes more.
    cache = StoreCache(backend, "s", budget=MemoryBudget(10 * entry(b"0000", b"v") + 10))
    for i in range(1000):
        assert cache.get(b"%04d" % i) == b"v"
    assert cache.cached_count == 10
    assert (cache.hits, cache.misses) == (0, 1000)
    cache.get(b"0990")  # cached, and now the most recently used
    cache.get(b"absent")  # absences are cached too: evicts 0991
    assert (cache.hits, cache.misses) == (1, 1001)
    cache.get(b"0990")
    cache.get(b"absent")
    cache.get(b"0991")
    assert (cache.hits, cache.misses) == (3, 1002)
    assert cache.budget.used <= cache.budget.limit


def test_large_values_take_the_room_of_many_small_ones(backend: InMemoryBackend) -> None:
    budget = MemoryBudget(100_000)
    cache = StoreCache(backend, "s", budget=budget)
    backend.write({"s": [(b"big%d" % i, bytes(30_000)) for i in range(10)]}, {})
    for i in range(10):
        cache.get(b"big%d" % i)
    assert cache.cached_count == 3  # not 10: each is 30 KB of a 100 KB budget
    assert budget.used <= 100_000


def test_full_when_changes_fill_the_budget_and_a_commit_empties_it(
    backend: InMemoryBackend,
) -> None:
    budget = MemoryBudget(3 * entry(b"k0", bytes(1000)))
    cache = StoreCache(backend, "s", budget=budget)
    cache.put(b"k0", bytes(1000))
    cache.put(b"k1", bytes(1000))
    cache.put(b"k0", bytes(1000))  # the same key again costs nothing more
    assert not cache.is_full
    cache.put(b"k2", bytes(1000))
    assert cache.is_full
    cache.put(b"k3", bytes(1000))  # a full cache still takes writes until the commit
    assert budget.used > budget.limit
    changes = cache.take_dirty()
    assert cache.is_full  # taken but not written: still pinned
    assert cache.get(b"k3") == bytes(1000)
    backend.write({"s": changes}, {})
    cache.mark_written()
    assert not cache.is_full
    assert budget.pinned == 0
    assert budget.used <= budget.limit  # the written changes stay cached, as room allows
    assert cache.cached_count == 3


def test_taken_changes_stay_visible_until_written(backend: InMemoryBackend) -> None:
    """Under exactly-once the backend gets the changes only after the transaction commits.
    Reads in between must not see the backend's past."""
    backend.write({"s": [(b"k", b"old"), (b"gone", b"old")]}, {})
    cache = StoreCache(backend, "s")
    cache.put(b"k", b"new")
    cache.delete(b"gone")
    first = cache.take_dirty()
    cache.put(b"n", b"1")
    second = cache.take_dirty()
    assert cache.unwritten_count == 3
    assert cache.get(b"k") == b"new"
    assert cache.get(b"gone") is None
    assert list(cache.range()) == [(b"k", b"new"), (b"n", b"1")]
    backend.write({"s": first + second}, {"t": 2})
    cache.mark_written()
    assert cache.unwritten_count == 0
    assert cache.get(b"k") == b"new"
    assert list(cache.range()) == [(b"k", b"new"), (b"n", b"1")]


def test_a_key_changed_again_after_it_was_taken_stays_dirty(backend: InMemoryBackend) -> None:
    cache = StoreCache(backend, "s")
    cache.put(b"k", b"1")
    changes = cache.take_dirty()
    cache.put(b"k", b"2")
    backend.write({"s": changes}, {})
    cache.mark_written()
    assert cache.get(b"k") == b"2"
    assert (cache.dirty_count, cache.cached_count) == (1, 0)
    assert cache.budget.pinned == entry(b"k", b"2")
    assert cache.take_dirty() == [(b"k", b"2")]


def test_drop_forgets_what_was_not_written(backend: InMemoryBackend) -> None:
    backend.write({"s": [(b"k", b"committed")]}, {})
    cache = StoreCache(backend, "s")
    cache.put(b"k", b"taken")
    cache.take_dirty()
    cache.put(b"k", b"dirty")
    cache.put(b"other", b"dirty")
    cache.drop()
    assert cache.budget.used == 0
    assert cache.get(b"k") == b"committed"
    assert cache.get(b"other") is None
    assert cache.dirty_count == 0
    assert cache.unwritten_count == 0


def test_caches_sharing_a_budget_make_room_for_each_other() -> None:
    backend = InMemoryBackend(["a", "b"])
    backend.write({"a": [(b"%02d" % i, bytes(100)) for i in range(20)]}, {})
    budget = MemoryBudget(10 * entry(b"00", bytes(100)))
    reader = StoreCache(backend, "a", budget=budget)
    writer = StoreCache(backend, "b", budget=budget)
    for i in range(20):
        reader.get(b"%02d" % i)
    assert reader.cached_count == 10
    for i in range(4):
        writer.put(b"w%d" % i, bytes(100))
    assert reader.cached_count == 6  # its least recently used reads gave way
    assert [reader.get(b"%02d" % i) for i in range(14, 20)] == [bytes(100)] * 6
    assert reader.misses == 20  # the most recent ones are still cached
    assert budget.used <= budget.limit
    reader.close()
    budget.tidy()
    assert budget.used == writer.pinned_bytes
    writer.close()
    assert budget.used == 0
    writer.close()  # closing twice is harmless


def test_a_closed_cache_gives_back_its_pinned_bytes_at_once_and_its_reads_a_slice_at_a_time() -> (
    None
):
    """Closing a task's cache does not walk its cached reads (a rebalance's close would stop
    every task for it): they leave by `tidy()`, one slice per batch of records, and before
    any open cache's reads when room is needed."""
    backend = InMemoryBackend(["a", "b"])
    value = bytes(100)
    backend.write({"a": [(b"%04d" % i, value) for i in range(1000)]}, {})
    one = entry(b"0000", value)
    budget = MemoryBudget(2000 * one)
    closing = StoreCache(backend, "a", budget=budget)
    staying = StoreCache(backend, "b", budget=budget)
    for i in range(1000):
        closing.get(b"%04d" % i)
    closing.put(b"dirty", value)
    staying.put(b"kept", value)
    assert staying.get(b"absent") is None  # a cached read of the cache that stays

    closing.close()

    reads = 1000 * one
    assert budget.pinned == staying.pinned_bytes, "the closed cache's changes are given back"
    assert budget.used == staying.pinned_bytes + staying.cached_bytes + reads
    assert budget.retiring == 1
    budget.tidy(100 * one)
    assert 0 < closing.cached_count <= 900, "a slice of the closed cache's reads, not all"
    budget.tidy(10_000 * one)
    assert budget.used == staying.pinned_bytes + staying.cached_bytes
    assert budget.retiring == 0
    assert budget.accounts[0].evictors == (staying,), "the closed cache has left the account"
    assert staying.get(b"kept") == value


def test_room_is_made_from_closed_caches_first() -> None:
    backend = InMemoryBackend(["a", "b"])
    value = bytes(100)
    backend.write({"a": [(b"a%03d" % i, value) for i in range(10)]}, {})
    backend.write({"b": [(b"b%03d" % i, value) for i in range(10)]}, {})
    one = entry(b"a000", value)
    budget = MemoryBudget(25 * one)
    closing = StoreCache(backend, "a", budget=budget)
    staying = StoreCache(backend, "b", budget=budget)
    for i in range(10):
        closing.get(b"a%03d" % i)
        staying.get(b"b%03d" % i)
    closing.close()
    for i in range(10):  # over 30 entries' worth: more than 5 must give way
        staying.put(b"new%03d" % i, value)
    assert staying.cached_count == 10, "the open cache's reads were not evicted"
    assert closing.cached_count <= 5
    assert budget.used <= budget.limit


def test_task_stores_commit_path_frees_the_budget() -> None:
    """The worker's loop: records fill the budget, `needs_flush` asks for a commit, the commit
    (flush to the changelog, then checkpoint) leaves nothing pinned, close gives it all back."""
    spec = StoreSpec("s", BytesSerde(), BytesSerde())
    backend = InMemoryBackend(["s"])
    budget = MemoryBudget(50 * entry(b"k00", bytes(1000)))
    stores = TaskStores(backend, (spec,), {"s": "app-s-changelog"}, memory=budget)
    store = stores.stores["s"]
    sent: list[tuple[str, bytes, bytes | None]] = []
    commits = 0
    for i in range(300):
        store.put(b"k%02d" % (i % 80), bytes(1000))
        if stores.needs_flush:
            stores.flush(lambda topic, key, value: sent.append((topic, key, value)))
            stores.checkpoint({"app-s-changelog": len(sent) - 1})
            commits += 1
            assert not stores.needs_flush
        assert budget.pinned < budget.limit + entry(b"k00", bytes(1000))
    assert commits == 300 // 50
    assert len(sent) == 300  # each put of a commit interval was a new key
    assert dict(backend.range("s")) == {key: value for _, key, value in sent}
    stores.close()
    budget.tidy(budget.limit)
    assert budget.used == 0
