"""`StoreCache` against a model: a dict of what the task sees and a dict of what is committed."""

from __future__ import annotations

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

from processor.state.backend import Change
from processor.state.cache import StoreCache
from processor.state.memory import InMemoryBackend

# Few keys, so that puts, deletes and reads keep hitting the same ones; with the byte edge cases.
KEYS = st.sampled_from(
    [b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"ba", b"c", b"\xff", b"\xff\xff"]
)
VALUES = st.binary(max_size=3)
BOUNDS = st.none() | KEYS | st.binary(max_size=2)
MAX_CACHED = 3


class CacheMachine(RuleBasedStateMachine):
    """Random puts, deletes, reads, range scans, commits (take_dirty, then write and
    mark_written, possibly several takes per write as under exactly-once) and aborts (drop)."""

    def __init__(self) -> None:
        super().__init__()
        self.backend = InMemoryBackend(["s"])
        self.cache = StoreCache(self.backend, "s", max_dirty=4, max_cached=MAX_CACHED)
        self.seen: dict[bytes, bytes] = {}  # what the task sees
        self.committed: dict[bytes, bytes] = {}  # what the backend has
        self.dirtied: dict[bytes, bytes | None] = {}  # expected next take_dirty(), in order
        self.taken: list[list[Change]] = []  # taken, not yet written
        self.offset = -1

    @initialize(data=st.dictionaries(KEYS, VALUES))
    def preload(self, data: dict[bytes, bytes]) -> None:
        self.backend.write({"s": list(data.items())}, {})
        self.seen = dict(data)
        self.committed = dict(data)

    @rule(key=KEYS, value=VALUES)
    def put(self, key: bytes, value: bytes) -> None:
        self.cache.put(key, value)
        self.seen[key] = value
        self.dirtied[key] = value

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        self.cache.delete(key)
        self.seen.pop(key, None)
        self.dirtied[key] = None

    @rule(key=KEYS)
    def get(self, key: bytes) -> None:
        assert self.cache.get(key) == self.seen.get(key)

    @rule(start=BOUNDS, end=BOUNDS)
    def range(self, start: bytes | None, end: bytes | None) -> None:
        expected = sorted(
            (k, v)
            for k, v in self.seen.items()
            if (start is None or k >= start) and (end is None or k < end)
        )
        assert list(self.cache.range(start, end)) == expected

    @rule()
    def take_dirty(self) -> None:
        changes = self.cache.take_dirty()
        assert changes == list(self.dirtied.items())  # each key once, latest, first-dirtied order
        self.dirtied = {}
        self.taken.append(changes)

    @precondition(lambda self: bool(self.taken))
    @rule()
    def write(self) -> None:
        changes = [change for taken in self.taken for change in taken]
        self.offset += len(changes)
        self.backend.write({"s": changes}, {"app-s-changelog": self.offset})
        self.cache.mark_written()
        for key, value in changes:
            if value is None:
                self.committed.pop(key, None)
            else:
                self.committed[key] = value
        self.taken = []
        assert dict(self.backend.range("s")) == self.committed

    @rule()
    def abort(self) -> None:
        self.cache.drop()
        self.seen = dict(self.committed)
        self.dirtied = {}
        self.taken = []

    @invariant()
    def counts(self) -> None:
        assert self.cache.dirty_count == len(self.dirtied)
        assert self.cache.cached_count <= MAX_CACHED
        assert self.cache.is_full == (len(self.dirtied) >= 4)


TestStoreCache = CacheMachine.TestCase
TestStoreCache.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@pytest.fixture
def backend() -> InMemoryBackend:
    return InMemoryBackend(["s"])


def test_a_hot_key_is_taken_once_with_its_latest_value(backend: InMemoryBackend) -> None:
    cache = StoreCache(backend, "s")
    cache.put(b"cold", b"x")
    for i in range(10_000):
        cache.put(b"hot", b"%d" % i)
    cache.put(b"cold", b"y")
    assert cache.dirty_count == 2
    assert cache.take_dirty() == [(b"cold", b"y"), (b"hot", b"9999")]
    assert cache.take_dirty() == []
    for i in range(10_000):
        cache.put(b"hot", b"%d" % i)
    cache.delete(b"hot")
    assert cache.take_dirty() == [(b"hot", None)]


def test_the_read_cache_is_bounded_and_least_recently_used_goes_first(
    backend: InMemoryBackend,
) -> None:
    backend.write({"s": [(b"%04d" % i, b"v") for i in range(1000)]}, {})
    cache = StoreCache(backend, "s", max_cached=10)
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


def test_full_at_max_dirty(backend: InMemoryBackend) -> None:
    cache = StoreCache(backend, "s", max_dirty=3)
    cache.put(b"a", b"1")
    cache.put(b"b", b"1")
    cache.put(b"a", b"2")
    assert not cache.is_full
    cache.delete(b"c")
    assert cache.is_full
    cache.take_dirty()
    assert not cache.is_full


def test_taken_changes_stay_visible_until_written(backend: InMemoryBackend) -> None:
    """Under exactly-once a full cache is flushed to the changelog mid-transaction; the backend
    gets the changes only after the commit. Reads in between must not see the backend's past."""
    backend.write({"s": [(b"k", b"old"), (b"gone", b"old")]}, {})
    cache = StoreCache(backend, "s", max_cached=0)
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


def test_drop_forgets_what_was_not_written(backend: InMemoryBackend) -> None:
    backend.write({"s": [(b"k", b"committed")]}, {})
    cache = StoreCache(backend, "s")
    cache.put(b"k", b"taken")
    cache.take_dirty()
    cache.put(b"k", b"dirty")
    cache.put(b"other", b"dirty")
    cache.drop()
    assert cache.get(b"k") == b"committed"
    assert cache.get(b"other") is None
    assert cache.dirty_count == 0
    assert cache.unwritten_count == 0


def test_range_merges_changes_with_the_backend(backend: InMemoryBackend) -> None:
    backend.write({"s": [(b"a", b"1"), (b"c", b"1"), (b"e", b"1")]}, {})
    cache = StoreCache(backend, "s")
    cache.put(b"b", b"2")  # new, between backend keys
    cache.delete(b"c")  # hides a backend key
    cache.put(b"e", b"2")  # overrides one
    cache.delete(b"z")  # deleting what is not there
    cache.put(b"f", b"2")  # after the last backend key
    assert list(cache.range()) == [(b"a", b"1"), (b"b", b"2"), (b"e", b"2"), (b"f", b"2")]
    assert list(cache.range(b"b", b"f")) == [(b"b", b"2"), (b"e", b"2")]


def test_writing_during_a_range_scan_is_allowed(backend: InMemoryBackend) -> None:
    backend.write({"s": [(b"%02d" % i, b"v") for i in range(0, 20, 2)]}, {})
    cache = StoreCache(backend, "s")
    cache.put(b"05", b"dirty")
    seen = []
    for key, _ in cache.range():
        seen.append(key)
        cache.put(key + b"+", b"new")
        cache.delete(b"06")
    assert seen[:4] == [b"00", b"02", b"04", b"05"]
    assert cache.get(b"06") is None


def test_approximate_count_is_the_backends(backend: InMemoryBackend) -> None:
    backend.write({"s": [(b"a", b"1"), (b"b", b"1")]}, {})
    cache = StoreCache(backend, "s")
    cache.put(b"c", b"1")
    assert cache.approximate_count() == 2


def test_unknown_store_and_bad_bounds_are_refused(backend: InMemoryBackend) -> None:
    with pytest.raises(KeyError, match="nope"):
        StoreCache(backend, "nope")
    with pytest.raises(ValueError, match="max_dirty"):
        StoreCache(backend, "s", max_dirty=0)
