"""The stores of one task, and the steps of a commit that concern them.

`TaskStores` is the source of truth for how far each store of a task is: its backend holds the
data and, in the same atomic write, the offset of the last changelog record that data includes.
At a commit the caches hand over their dirty entries once each (`flush`), the runtime produces
them to the changelogs, and once the broker has them (at-least-once: flushed; exactly-once:
committed) `checkpoint` writes them to the backend with their changelog offsets. The caches
charge the worker's `MemoryBudget`, shared with every other task of the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from processor.state.backend import Change, TaskStateBackend
from processor.state.budget import MemoryBudget
from processor.state.cache import StoreCache
from processor.state.changelog_tail import ChangelogTail
from processor.state.join_buffer import JoinBuffer
from processor.state.time_index import CLOCKS
from processor.state.timer_store import TimerStore
from processor.state.ttl_store import TtlKeyValueStore
from processor.state.typed import KeyValueStore
from processor.state.window_store import WindowStore
from processor.topology.graph import StoreKind, StoreSpec

# Called for each changelog record: (changelog topic, key, value or None for a delete).
ChangelogWriter = Callable[[str, bytes, bytes | None], None]

# A store as operators use it: key-value (with a TTL, maybe), windowed (time windows and
# sessions), the timers of a process() operator, or a stream-stream join's buffer.
AnyStore = KeyValueStore[Any, Any] | WindowStore[Any, Any] | TimerStore | JoinBuffer


def make_store(caches: Mapping[str, StoreCache], spec: StoreSpec) -> AnyStore:
    cache = caches[spec.name]
    if spec.windowed:
        sessions = spec.kind is StoreKind.SESSION
        return WindowStore(cache, spec.key_serde, spec.value_serde, sessions=sessions)
    if spec.kind is StoreKind.TIMERS:
        return TimerStore(cache, spec.key_serde)
    if spec.kind is StoreKind.JOIN_BUFFER:
        return JoinBuffer(cache, spec.key_serde, spec.value_serde)
    if spec.expiry_store is not None:
        return TtlKeyValueStore(
            cache,
            caches[spec.expiry_store],
            spec.key_serde,
            spec.value_serde,
            ttl_ms=spec.ttl_ms,
            clock=CLOCKS[spec.ttl_clock],
        )
    return KeyValueStore(cache, spec.key_serde, spec.value_serde)


class TaskStores:
    def __init__(
        self,
        backend: TaskStateBackend,
        specs: tuple[StoreSpec, ...],
        changelogs: Mapping[str, str],
        *,
        memory: MemoryBudget,
    ) -> None:
        self.backend = backend
        self.changelogs = dict(changelogs)
        self._caches = {spec.name: StoreCache(backend, spec.name, budget=memory) for spec in specs}
        # Expiry indexes: every change of theirs is for the backend only.
        self._local_caches = {
            name: StoreCache(backend, name, budget=memory)
            for spec in specs
            if (name := spec.expiry_store) is not None
        }
        caches = {**self._caches, **self._local_caches}
        self.stores: dict[str, AnyStore] = {spec.name: make_store(caches, spec) for spec in specs}
        # Flushed to the changelog, not yet in the backend: written by the next checkpoint.
        self._unwritten: dict[str, list[Change]] = {}
        self.tail = ChangelogTail(backend.offsets())
        """What this owner wrote to the changelogs since they were last checked (at-least-once)."""

    @property
    def needs_flush(self) -> bool:
        """The worker's caches are full (pinned bytes fill the memory budget): commit early
        rather than let them grow."""
        return any(cache.is_full for cache in self._all_caches())

    @property
    def needs_checkpoint(self) -> bool:
        """Changes were flushed to the changelog that the backend does not have yet."""
        return bool(self._unwritten)

    def flush(self, write_changelog: ChangelogWriter) -> int:
        """Send every dirty entry, once, to its store's changelog; returns how many."""
        count = 0
        for store in self.stores.values():
            if isinstance(store, WindowStore | TimerStore | TtlKeyValueStore):
                store.write_index()
            if isinstance(store, TimerStore | TtlKeyValueStore):
                # The time index's removals: for the backend only, with this checkpoint.
                removed = store.index.take_removed()
                if removed:
                    deletes: list[Change] = [(entry, None) for entry in removed]
                    self._unwritten.setdefault(store.index.store, []).extend(deletes)
        for name, cache in self._local_caches.items():
            changes = cache.take_dirty()
            cache.take_local()
            if changes:
                self._unwritten.setdefault(name, []).extend(changes)
        for name, cache in self._caches.items():
            dirty = cache.take_dirty()
            if not dirty:
                continue
            local = cache.take_local()
            topic = self.changelogs[name]
            written = 0
            for key, value in dirty:
                if not local or key not in local:
                    write_changelog(topic, key, value)
                    written += 1
            self.tail.wrote(topic, written)
            count += written
            self._unwritten.setdefault(name, []).extend(dirty)
        return count

    def reassert(self, topic: str, keys: Iterable[bytes]) -> int:
        """Mark `keys` of the store whose changelog is `topic` changed, with the values they
        have here, so that the next flush writes them (a delete where absent) after what someone
        else wrote there (`processor.state.changelog_tail`); returns how many."""
        name = next(name for name, changelog in self.changelogs.items() if changelog == topic)
        cache = self._caches[name]
        count = 0
        for key in keys:
            value = cache.get(key)
            if value is None:
                cache.delete(key)
            else:
                cache.put(key, value)
            count += 1
        return count

    def checkpoint(self, changelog_offsets: Mapping[str, int]) -> None:
        """Write what `flush` sent, with the offsets of the last changelog record per topic,
        atomically. Call only once the broker has the changelog records."""
        if not self._unwritten:
            return
        offsets = {t: o for t, o in changelog_offsets.items() if t in self.changelogs.values()}
        self.backend.write(self._unwritten, offsets)
        self._unwritten = {}
        for cache in self._all_caches():
            cache.mark_written()

    def drop(self) -> None:
        """Forget everything not checkpointed (an aborted transaction)."""
        for cache in self._all_caches():
            cache.drop()
        for store in self.stores.values():
            if isinstance(store, TimerStore | TtlKeyValueStore):
                store.index.discard()
        self._unwritten = {}

    def close(self, *, close_backend: bool = True) -> None:
        """Give the caches' bytes back to the memory budget and close the backend (after
        committing what should be committed; `close_backend` False: the caller closes it)."""
        for store in self.stores.values():
            if isinstance(store, TimerStore) and store.cache.clean:
                # Nothing changed since the checkpoint: the timers the index keeps in memory are
                # those of the backend, and writing them spares the next owner a rebuild.
                store.index.spill()
        for cache in self._all_caches():
            cache.close()
        if close_backend:
            self.backend.close()

    def cache_reads(self) -> dict[str, tuple[int, int]]:
        """Store (or expiry index) -> reads its cache answered, reads that went to the
        backend."""
        return {cache.store: (cache.hits, cache.misses) for cache in self._all_caches()}

    def _all_caches(self) -> list[StoreCache]:
        return [*self._caches.values(), *self._local_caches.values()]
