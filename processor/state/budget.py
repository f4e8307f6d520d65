"""One memory budget per worker, in bytes, for every buffer of records the worker keeps.

Today the stores' write-back caches are its only users (account `store_cache`); buffers that
later features add (window and join buffers, sink batches, in-flight asynchronous calls) open
an account of their own and count against the same limit, so one setting bounds them all.

An account holds two plain integers that its owners add to and subtract from directly, so
charging costs an integer add, not a call (the store cache charges on every put):

- `used`: every byte the account's buffers hold;
- `evictable`: the part of `used` that can be dropped at any time, such as cached reads. The
  rest is pinned: it cannot be given back before something happens, such as changes not yet
  committed.

Evictable bytes give way to pinned ones: whenever the total is over the limit, `make_room()`
asks the evictors to drop some (an owner that adds bytes calls it); after that the total is at
most `max(limit, pinned)`. When pinned bytes reach the limit (`is_full`) the worker commits
early; until it sees that (once per batch of records) they may exceed it by what one batch
adds. An owner on a hot path may first compare only its own account with the limit (the store
cache does; exact while it is the only account holding bytes) and call `make_room()` when that
is over. Bytes are what the owner estimates its entries cost (payload plus a measured per-entry
overhead), not an exact measure of the process; librdkafka's buffers and RocksDB's block cache
and memtables have limits of their own.

An owner that closes with evictable bytes left (a task given away with a warm read cache)
`retire()`s its evictor instead of dropping them at once: `make_room()` takes retired bytes
before anyone else's, and `tidy()`, called once per batch of records, drops them a slice at a
time. Dropping 64 MiB of small cached entries at once takes 100-150 ms, which every task of the
worker would wait for during a rebalance; a slice is a fraction of a millisecond.

Used from the main thread only.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

DEFAULT_STORE_CACHE_BYTES = 64 * 1024 * 1024
"""The worker's budget unless configured (`store_cache_bytes`): 64 MiB holds ~300,000 small
entries (the count benchmark's 100,000 keys with room to spare) or ~650 values of 100 KB, and is
small beside RocksDB's shared block cache and memtables (`processor.state.rocksdb`: 64 + 256
MiB). Kafka Streams' record caches get 10 MiB per instance (`statestore.cache.max.bytes`)."""


TIDY_BYTES = 256 * 1024
"""What one `tidy()` drops of retired owners' bytes: about 1,000 small entries, 0.1-0.3 ms."""


class Evictor(Protocol):
    def evict(self, nbytes: int) -> int:
        """Drop evictable entries, least recently used first, until `nbytes` are freed or none
        are left; subtract them from the account (`used` and `evictable`) and return how many
        bytes were freed."""
        ...


class MemoryAccount:
    """What one kind of buffer holds of a `MemoryBudget` (see the module docstring)."""

    __slots__ = ("_evictors", "evictable", "name", "used")

    def __init__(self, name: str) -> None:
        self.name = name
        self.used = 0
        """Bytes held; owners change it directly."""
        self.evictable = 0
        """The part of `used` that can be dropped when the budget needs room; owners change
        it directly."""
        self._evictors: list[Evictor] = []

    @property
    def pinned(self) -> int:
        """The part of `used` that stays until something happens (a commit)."""
        return self.used - self.evictable

    def add_evictor(self, evictor: Evictor) -> None:
        self._evictors.append(evictor)

    def remove_evictor(self, evictor: Evictor) -> None:
        """Forget `evictor` (it must have given back its bytes itself)."""
        self._evictors.remove(evictor)

    @property
    def evictors(self) -> tuple[Evictor, ...]:
        return tuple(self._evictors)

    def __repr__(self) -> str:
        return f"MemoryAccount({self.name!r}, used={self.used}, evictable={self.evictable})"


class MemoryBudget:
    """`limit` bytes shared by the accounts of one worker."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a memory budget needs a positive limit, got {limit}")
        self._limit = limit
        self._accounts: dict[str, MemoryAccount] = {}
        self._retired: deque[tuple[Evictor, MemoryAccount]] = deque()

    @property
    def limit(self) -> int:
        """Bytes; fixed, so that owners may keep a copy for their hot paths."""
        return self._limit

    def account(self, name: str) -> MemoryAccount:
        """The account named `name`, opened on first use; every owner of the same kind of
        buffer shares it."""
        account = self._accounts.get(name)
        if account is None:
            account = self._accounts[name] = MemoryAccount(name)
        return account

    @property
    def accounts(self) -> tuple[MemoryAccount, ...]:
        return tuple(self._accounts.values())

    @property
    def used(self) -> int:
        return sum(a.used for a in self._accounts.values())

    @property
    def pinned(self) -> int:
        return sum(a.used - a.evictable for a in self._accounts.values())

    @property
    def is_full(self) -> bool:
        """Pinned bytes fill the whole budget: time to commit."""
        return self.pinned >= self.limit

    def make_room(self, first: Evictor | None = None) -> None:
        """Evict until the total is within the limit or nothing evictable is left; `first`
        (the owner asking) gives up its own least recently used entries before the others."""
        excess = self.used - self.limit
        if excess <= 0:
            return
        for retired, _ in self._retired:  # nobody reads these any more: they go first
            excess -= retired.evict(excess)
            if excess <= 0:
                return
        if first is not None:
            excess -= first.evict(excess)
        for account in self._accounts.values():
            for evictor in account.evictors:
                if excess <= 0:
                    return
                if evictor is not first:
                    excess -= evictor.evict(excess)

    def retire(self, evictor: Evictor, account: MemoryAccount) -> None:
        """`evictor`'s owner has closed, its pinned bytes given back: the evictable bytes it
        still holds in `account` go by `tidy()` (or first in `make_room()`), after which it
        leaves the account."""
        self._retired.append((evictor, account))

    @property
    def retiring(self) -> int:
        """Retired owners that still hold bytes."""
        return len(self._retired)

    def tidy(self, nbytes: int = TIDY_BYTES) -> None:
        """Drop about `nbytes` (at least) of retired owners' bytes, oldest owner first."""
        retired = self._retired
        while retired and nbytes > 0:
            evictor, account = retired[0]
            freed = evictor.evict(nbytes)
            if freed >= nbytes:
                return
            nbytes -= freed  # it has nothing left
            retired.popleft()
            account.remove_evictor(evictor)

    def __repr__(self) -> str:
        accounts = ", ".join(repr(a) for a in self._accounts.values())
        return f"MemoryBudget(limit={self.limit}, [{accounts}])"
