"""The stores of one task, and the steps of a commit that concern them.

`TaskStores` is the source of truth for how far each store of a task is: its backend holds the
data and, in the same atomic write, the offset of the last changelog record that data includes.
At a commit the caches hand over their dirty entries once each (`flush`), the runtime produces
them to the changelogs, and once the broker has them (at-least-once: flushed; exactly-once:
committed) `checkpoint` writes them to the backend with their changelog offsets. The caches
charge the worker's `MemoryBudget`, shared with every other task of the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from processor.state.backend import Change, TaskStateBackend
from processor.state.budget import MemoryBudget
from processor.state.cache import StoreCache
from processor.state.typed import KeyValueStore
from processor.state.window_store import WindowStore
from processor.topology.graph import StoreKind, StoreSpec

# Called for each changelog record: (changelog topic, key, value or None for a delete).
ChangelogWriter = Callable[[str, bytes, bytes | None], None]

# A store as operators use it: key-value, or windowed (time windows and sessions).
AnyStore = KeyValueStore[Any, Any] | WindowStore[Any, Any]


def make_store(cache: StoreCache, spec: StoreSpec) -> AnyStore:
    if spec.windowed:
        sessions = spec.kind is StoreKind.SESSION
        return WindowStore(cache, spec.key_serde, spec.value_serde, sessions=sessions)
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
        self.stores: dict[str, AnyStore] = {
            spec.name: make_store(self._caches[spec.name], spec) for spec in specs
        }
        # Flushed to the changelog, not yet in the backend: written by the next checkpoint.
        self._unwritten: dict[str, list[Change]] = {}

    @property
    def needs_flush(self) -> bool:
        """The worker's caches are full (pinned bytes fill the memory budget): commit early
        rather than let them grow."""
        return any(cache.is_full for cache in self._caches.values())

    @property
    def needs_checkpoint(self) -> bool:
        """Changes were flushed to the changelog that the backend does not have yet."""
        return bool(self._unwritten)

    def flush(self, write_changelog: ChangelogWriter) -> int:
        """Send every dirty entry, once, to its store's changelog; returns how many."""
        count = 0
        for store in self.stores.values():
            if isinstance(store, WindowStore):
                store.write_index()
        for name, cache in self._caches.items():
            dirty = cache.take_dirty()
            if not dirty:
                continue
            local = cache.take_local()
            topic = self.changelogs[name]
            for key, value in dirty:
                if not local or key not in local:
                    write_changelog(topic, key, value)
                    count += 1
            self._unwritten.setdefault(name, []).extend(dirty)
        return count

    def checkpoint(self, changelog_offsets: Mapping[str, int]) -> None:
        """Write what `flush` sent, with the offsets of the last changelog record per topic,
        atomically. Call only once the broker has the changelog records."""
        if not self._unwritten:
            return
        offsets = {t: o for t, o in changelog_offsets.items() if t in self.changelogs.values()}
        self.backend.write(self._unwritten, offsets)
        self._unwritten = {}
        for cache in self._caches.values():
            cache.mark_written()

    def drop(self) -> None:
        """Forget everything not checkpointed (an aborted transaction)."""
        for cache in self._caches.values():
            cache.drop()
        self._unwritten = {}

    def close(self) -> None:
        """Give the caches' bytes back to the memory budget and close the backend (after
        committing what should be committed)."""
        for cache in self._caches.values():
            cache.close()
        self.backend.close()
