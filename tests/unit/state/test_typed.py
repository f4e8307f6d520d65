"""`KeyValueStore`: typed keys and values over the byte-level cache."""

from __future__ import annotations

import doctest
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import processor.state.typed
from processor.errors import ChangelogRecordTooLargeError, StoredValueError, TransientError
from processor.serdes import BytesSerde, IntSerde, JsonSerde, StringSerde
from processor.state.cache import StoreCache
from processor.state.memory import InMemoryBackend
from processor.state.typed import NO_LIMIT, KeyValueStore, _prefix_end


def make_store(key_serde: Any = None, value_serde: Any = None) -> KeyValueStore[Any, Any]:
    cache = StoreCache(InMemoryBackend(["s"]), "s")
    return KeyValueStore(cache, key_serde or StringSerde(), value_serde or JsonSerde())


def commit(cache: StoreCache) -> None:
    cache.backend.write({cache.store: cache.take_dirty()}, {})
    cache.mark_written()


def test_docstring_examples_run() -> None:
    result = doctest.testmod(processor.state.typed)
    assert result.attempted > 0
    assert result.failed == 0


def test_values_round_trip_through_serdes() -> None:
    store = make_store(StringSerde(), JsonSerde())
    store.put("k", {"n": [1, 2.5, "é"], "ok": True})
    assert store.get("k") == {"n": [1, 2.5, "é"], "ok": True}
    assert store.name == "s"


def test_values_round_trip_through_a_commit() -> None:
    cache = StoreCache(InMemoryBackend(["s"]), "s")
    store: KeyValueStore[int, str] = KeyValueStore(cache, IntSerde(), StringSerde())
    store.put(-5, "minus five")
    store.put(7, "seven")
    commit(cache)
    cache.drop()  # nothing cached: reads go to the backend
    assert store.get(-5) == "minus five"
    assert cache.backend.get("s", IntSerde().serialize(7) or b"") == b"seven"


def test_default_is_returned_only_when_missing() -> None:
    store = make_store(StringSerde(), IntSerde())
    assert store.get("missing") is None
    assert store.get("missing", 0) == 0
    store.put("zero", 0)
    assert store.get("zero", 42) == 0  # a falsy value is still a value


def test_put_none_and_delete_remove_the_key() -> None:
    store = make_store()
    store.put("a", 1)
    store.put("b", 2)
    store.put("a", None)
    store.delete("b")
    store.delete("never-there")
    assert "a" not in store
    assert "b" not in store
    assert list(store.all()) == []


def test_contains() -> None:
    store = make_store()
    store.put("k", None)
    assert "k" not in store
    store.put("k", [])
    assert "k" in store  # an empty JSON list is a value


def test_range_and_all_are_in_serialized_key_order() -> None:
    store = make_store(IntSerde(), IntSerde())
    for n in (3, -1, 0, 1000, -1000):
        store.put(n, n * 10)
    # Signed big-endian: negatives sort after positives, as in Kafka Streams.
    assert [k for k, _ in store.all()] == [0, 3, 1000, -1000, -1]
    assert list(store.range(0, 1000)) == [(0, 0), (3, 30)]
    assert list(store.range(start=1000)) == [(1000, 10000), (-1000, -10000), (-1, -10)]


def test_prefix_scan() -> None:
    store = make_store()
    for key in ("user:1", "user:10", "user:2", "user;", "use", "users", "admin:1"):
        store.put(key, key.upper())
    assert [k for k, _ in store.prefix("user:")] == ["user:1", "user:10", "user:2"]
    assert [k for k, _ in store.prefix("user")] == ["user:1", "user:10", "user:2", "user;", "users"]
    assert [k for k, _ in store.prefix("")] == sorted(
        ["user:1", "user:10", "user:2", "user;", "use", "users", "admin:1"]
    )
    assert list(store.prefix("nobody")) == []


def test_prefix_scan_sees_uncommitted_and_committed_entries() -> None:
    cache = StoreCache(InMemoryBackend(["s"]), "s")
    store: KeyValueStore[str, int] = KeyValueStore(cache, StringSerde(), IntSerde())
    store.put("a1", 1)
    store.put("a2", 2)
    commit(cache)
    store.put("a3", 3)
    store.delete("a1")
    assert list(store.prefix("a")) == [("a2", 2), ("a3", 3)]


@given(prefix=st.binary(max_size=4), keys=st.lists(st.binary(max_size=5), max_size=30))
def test_prefix_matches_startswith_for_any_bytes(prefix: bytes, keys: list[bytes]) -> None:
    store = make_store(BytesSerde(), BytesSerde())
    for key in keys:
        store.put(key, b"v")
    assert [k for k, _ in store.prefix(prefix)] == sorted({k for k in keys if k.startswith(prefix)})


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"", None), (b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", None), (b"a\x00", b"a\x01")],
)
def test_prefix_end(prefix: bytes, end: bytes | None) -> None:
    assert _prefix_end(prefix) == end


def test_approximate_count() -> None:
    cache = StoreCache(InMemoryBackend(["s"]), "s")
    store: KeyValueStore[str, int] = KeyValueStore(cache, StringSerde(), IntSerde())
    for i in range(10):
        store.put(f"k{i}", i)
    commit(cache)
    assert store.approximate_count() == 10


def test_none_keys_are_refused() -> None:
    store = make_store()
    with pytest.raises(ValueError, match="None"):
        store.put(None, 1)


def test_a_put_over_the_changelog_limit_is_refused_and_changes_nothing() -> None:
    store = make_store(value_serde=BytesSerde())
    assert store.max_record_bytes == NO_LIMIT
    store.limit_changelog("app-s-changelog", 10)
    store.put("k", b"x" * 9)  # 1 + 9 bytes: fits
    with pytest.raises(ChangelogRecordTooLargeError) as raised:
        store.put("k", b"y" * 10)
    error = raised.value
    assert (error.store, error.target_topic) == ("s", "app-s-changelog")
    assert (error.key_size, error.value_size, error.limit) == (1, 10, 10)
    assert store.get("k") == b"x" * 9
    store.put("k" * 50, None)  # a delete always fits
    store.delete("k" * 50)


def test_a_value_the_serde_cannot_read_names_the_store_and_key() -> None:
    cache = StoreCache(InMemoryBackend(["s"]), "s")
    KeyValueStore(cache, StringSerde(), StringSerde()).put("k", "text")
    store: KeyValueStore[str, int] = KeyValueStore(cache, StringSerde(), IntSerde())
    with pytest.raises(StoredValueError, match=r"store 's' holds a value for key 'k'.* int "):
        store.get("k")
    with pytest.raises(StoredValueError):
        list(store.all())


def test_a_transient_serde_error_is_not_blamed_on_the_stored_value() -> None:
    class Unreachable(StringSerde):
        def deserialize(self, data: bytes | None) -> str | None:
            raise TransientError("registry unreachable")

    cache = StoreCache(InMemoryBackend(["s"]), "s")
    KeyValueStore(cache, StringSerde(), StringSerde()).put("k", "text")
    with pytest.raises(TransientError):
        KeyValueStore(cache, StringSerde(), Unreachable()).get("k")
