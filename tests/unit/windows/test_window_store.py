"""The window store's layout: one key's windows are one range scan (keys that are prefixes of
each other do not mix), the time index orders windows by their last millisecond, and expiry
removes windows and kept records with their index entries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processor.serdes import IntSerde, StringSerde
from processor.state.budget import MemoryBudget
from processor.state.cache import StoreCache
from processor.state.indexing import with_indexes
from processor.state.memory import InMemoryBackend
from processor.state.task_stores import TaskStores
from processor.state.window_store import WindowStore
from processor.topology.graph import StoreKind, StoreSpec
from processor.windows.layout import parse_index_key, parse_window_key


def store() -> WindowStore[str, int]:
    return WindowStore(StoreCache(InMemoryBackend(["w"]), "w"), StringSerde(), IntSerde())


def _put(s: WindowStore[str, int], key: str, start: int, end: int, value: int) -> None:
    data = IntSerde().serialize(value)
    assert data is not None
    s.put(s.key_bytes(key), start, end, end - 1, data, new=True)


@given(st.lists(st.tuples(st.sampled_from(["a", "ab", "b", ""]), st.integers(0, 50)), max_size=30))
def test_a_keys_windows_are_its_own_in_start_order(windows: list[tuple[str, int]]) -> None:
    s = store()
    for key, start in windows:
        _put(s, key, start * 10, start * 10 + 10, start)
    for key in ("a", "ab", "b", ""):
        expected = sorted({start * 10 for k, start in windows if k == key})
        assert [w.start for w in s.windows_of(s.key_bytes(key))] == expected
        assert [w.start_ms for w, _ in s.fetch(key, 100, 300)] == [
            e for e in expected if 100 <= e <= 300
        ]


def test_the_index_orders_windows_by_end_and_expiry_empties_both() -> None:
    s = store()
    _put(s, "late", 0, 100, 1)
    _put(s, "early", 50, 60, 2)
    s.add_record(s.key_bytes("early"), 55, b"raw")
    closed = [parse_index_key(entry) for entry, _ in s.closed(None, 1_000)]
    assert [(end, kind, key) for end, kind, key, _, _ in closed] == [
        (56, b"R", b"early"),  # a record is kept until its right window closes
        (60, b"W", b"early"),
        (100, b"W", b"late"),
    ]
    assert s.first_end() == 56
    assert s.expire(61) == 2  # the record at 55 and the window ending at 60
    assert list(s.records(s.key_bytes("early"), 0, 100)) == []
    assert [parse_window_key(k)[0] for k, _ in s.cache.range(b"W", b"X")] == [b"late"]
    assert s.first_live_end() == 100  # the backend drops them at the checkpoint


def test_only_windows_and_records_reach_the_changelog_and_a_restore_derives_the_index() -> None:
    backend = InMemoryBackend(["w"])
    written = WindowStore(StoreCache(backend, "w"), StringSerde(), IntSerde())
    _put(written, "k", 0, 10, 1)
    written.add_record(written.key_bytes("k"), 5, b"v")
    written.set_meta(b"cursor", b"x")
    stores = TaskStores(backend, (), {}, memory=MemoryBudget(1 << 20))
    stores._caches["w"] = written.cache  # the store as a task holds it
    stores.stores["w"] = written
    stores.changelogs["w"] = "app-w-changelog"
    changelog: list[tuple[bytes, bytes | None]] = []
    stores.flush(lambda _topic, key, value: changelog.append((key, value)))
    assert sorted(key[:1] for key, _ in changelog) == [b"M", b"R", b"W"]  # no index entry

    stores.checkpoint({})
    restored = InMemoryBackend(["w"])
    spec = StoreSpec("w", StringSerde(), IntSerde(), StoreKind.WINDOW)
    with_indexes(restored, [spec]).write({"w": changelog}, {})
    assert list(restored.range("w")) == list(backend.range("w"))  # index entries included

    written.expire(11)  # expiry is local: nothing for the changelog
    changelog.clear()
    stores.flush(lambda _topic, key, value: changelog.append((key, value)))
    assert changelog == []
    stores.checkpoint({})
    assert [key[:1] for key, _ in backend.range("w")] == [b"M"]
