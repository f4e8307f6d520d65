"""The key-value store user code sees: typed keys and values over a `StoreCache`, through serdes.

Keys are ordered by their serialized bytes, as in Kafka Streams, not by their Python values:
with `StringSerde` that is UTF-8 byte order, and with `IntSerde` (signed big-endian) negative
numbers come after positive ones.

Every write is a changelog record at the next commit, so a store given its changelog's limit
(`limit_changelog`) refuses, when it is written, a value whose key and value bytes would not fit:
the store stays equal to its changelog, and the error reaches the production error handler of
the record being processed instead of failing the commit. A stored value its serde cannot read
raises `StoredValueError`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Generic, TypeVar, cast, overload

from processor.errors import ChangelogRecordTooLargeError, StoredValueError, TransientError
from processor.serdes._serde import Serde
from processor.state.cache import StoreCache

K = TypeVar("K")
"""The type of the store's keys."""
V = TypeVar("V")
"""The type of the store's values."""
D = TypeVar("D")
"""The type of a default returned for a missing key."""


NO_LIMIT = sys.maxsize
"""The changelog limit of a store that was given none: every write fits."""

_NO_KEY = object()
# Key types whose serialized form cannot change while the object lives.
_IMMUTABLE_KEY_TYPES = frozenset({str, bytes, int})


class KeyValueStore(Generic[K, V]):
    """A task's view of one store: what it has committed plus what it wrote since.

    >>> from processor.serdes import IntSerde, StringSerde
    >>> from processor.state.cache import StoreCache
    >>> from processor.state.memory import InMemoryBackend
    >>> backend = InMemoryBackend(["counts"])
    >>> counts = KeyValueStore(StoreCache(backend, "counts"), StringSerde(), IntSerde())
    >>> counts.put("apple", 3)
    >>> counts.put("apricot", 1)
    >>> counts.put("banana", 7)
    >>> counts.get("apple"), counts.get("cherry"), counts.get("cherry", 0)
    (3, None, 0)
    >>> list(counts.prefix("ap"))
    [('apple', 3), ('apricot', 1)]
    >>> counts.delete("apple")
    >>> "apple" in counts, "banana" in counts
    (False, True)
    """

    def __init__(self, cache: StoreCache, key_serde: Serde[K], value_serde: Serde[V]) -> None:
        """The store named `cache.store`, reading and writing through `cache`."""
        self.name = cache.store
        """The store's name (an attribute, as `processor.topology.context.Store` has it)."""
        self._cache = cache
        self._key_serde = key_serde
        self._value_serde = value_serde
        self._read = value_serde.deserialize
        self._write = value_serde.serialize
        # The last key serialized, when immutable: an aggregation reads and then writes the
        # same key, and serializing it once is a measurable part of a record's cost.
        self._last_key: object = _NO_KEY
        self._last_key_bytes = b""
        # The most key + value bytes a write may have (`limit_changelog`): one int compared per
        # put, nothing looked up.
        self._max_record_bytes = NO_LIMIT
        self._changelog = ""

    def limit_changelog(self, changelog: str, max_record_bytes: int) -> None:
        """Refuse, with `ChangelogRecordTooLargeError`, a put whose key and value together are
        larger than `max_record_bytes`: what one record of topic `changelog` may hold. Deletes
        (tombstones) always fit."""
        self._changelog = changelog
        self._max_record_bytes = max_record_bytes

    @property
    def max_record_bytes(self) -> int:
        """The most key + value bytes a put may have (`NO_LIMIT` unless limited)."""
        return self._max_record_bytes

    @overload
    def get(self, key: K, default: None = None) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: D | None = None) -> V | D | None:
        """The value of `key`, or `default` when the store has none."""
        key_bytes = self._last_key_bytes if key is self._last_key else self._key(key)
        data = self._cache.get(key_bytes)
        if data is None:
            return default
        try:  # `_value`, written out: a read per record of every aggregation
            return cast(V, self._read(data))
        except TransientError:
            raise
        except Exception as e:
            raise StoredValueError(self.name, self._value_serde.name, key, e) from e

    def put(self, key: K, value: V | None) -> None:
        """Set the value of `key`; None deletes it. Raises `ChangelogRecordTooLargeError`, and
        changes nothing, when the key and value do not fit one changelog record."""
        data = self._write(value) if value is not None else None
        if data is None:
            self._cache.delete(self._key(key))
            return
        key_bytes = self._last_key_bytes if key is self._last_key else self._key(key)
        if len(key_bytes) + len(data) > self._max_record_bytes:
            raise ChangelogRecordTooLargeError(
                self.name, self._changelog, len(key_bytes), len(data), self._max_record_bytes
            )
        self._cache.put(key_bytes, data)

    def delete(self, key: K) -> None:
        self._cache.delete(self._key(key))

    def range(self, start: K | None = None, end: K | None = None) -> Iterator[tuple[K, V]]:
        """Entries whose serialized key is `>= start` and `< end` (None: unbounded), in
        serialized-key order."""
        low = None if start is None else self._key(start)
        high = None if end is None else self._key(end)
        return self._typed(self._cache.range(low, high))

    def prefix(self, prefix: K) -> Iterator[tuple[K, V]]:
        """Entries whose serialized key starts with the serialized `prefix`, in serialized-key
        order. Meaningful for serdes whose bytes share prefixes as values do (strings, bytes)."""
        low = self._key(prefix)
        return self._typed(self._cache.range(low, _prefix_end(low)))

    def all(self) -> Iterator[tuple[K, V]]:
        """Every entry, in serialized-key order."""
        return self._typed(self._cache.range())

    def approximate_count(self) -> int:
        """Roughly how many keys the store has committed (uncommitted writes not counted)."""
        return self._cache.approximate_count()

    def __contains__(self, key: K) -> bool:
        return self._cache.get(self._key(key)) is not None

    def _key(self, key: K) -> bytes:
        if key is self._last_key:
            return self._last_key_bytes
        data = self._key_serde.serialize(key)
        if data is None:
            raise ValueError(f"store {self.name!r}: keys cannot be None")
        if type(key) in _IMMUTABLE_KEY_TYPES:
            self._last_key, self._last_key_bytes = key, data
        return data

    def _value(self, data: bytes, key: object) -> V:
        try:
            # The serde maps only None to None and stored values are never None.
            return cast(V, self._value_serde.deserialize(data))
        except TransientError:
            raise  # the serde's registry is away: nothing is wrong with the value
        except Exception as e:
            raise StoredValueError(self.name, self._value_serde.name, key, e) from e

    def _typed(self, entries: Iterator[tuple[bytes, bytes]]) -> Iterator[tuple[K, V]]:
        key_serde = self._key_serde
        for key_bytes, value in entries:
            key = cast(K, key_serde.deserialize(key_bytes))
            yield key, self._value(value, key)

    def __repr__(self) -> str:
        return f"KeyValueStore({self.name!r})"


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with `prefix`; None when there is none
    (`prefix` is empty or all 0xff)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])
