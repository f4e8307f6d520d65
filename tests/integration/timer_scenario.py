"""Input for the `timing` worker topology (`tests/worker_topologies.py`): keyed commands that set,
replace and cancel stream-clock timers and write a store with a TTL; what the topology must emit
for it, computed here from the input alone; and how its output and changelogs are read back.

Records are produced to the partition Kafka's default partitioner gives their key (the query
API routes keys the same way): the records of one partition are those of one task, and a task's
stream time is the largest timestamp among its partition's records so far. The reference plays
each partition's records in offset order, as the issue and README define it:

- a record first moves stream time, then runs its command: `set:<name>:<at>` sets or replaces the
  key's timer `name`, `cancel:<name>` removes it, `read:<v>` writes `v` into "last-seen"
  (`written_at` = the stream time); a write finding the key's previous value expired
  (`written_at + ttl <= stream time`) expires it first;
- then every timer with `at <= stream time` fires, by time, key and name, forwarding
  `"<key>|<name>|<at>"` stamped `at` (a firing "echo" sets the key's timer "echo-2" at
  `at + TIMING_ECHO_MS`, which may be due too, and fires then);
- then every key whose last write is `ttl` old expires: `"expired|<key>|<last value>"` stamped
  `written_at + ttl`.

A timer replaced or cancelled before its time never fires with that time, and a key expires once
per gap of `ttl` without writes: the reference gives the exact multiset of outputs.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, TopicPartition

from processor.query.partitioner import partition_for
from tests.integration.workers import PARTITIONS
from tests.worker_topologies import TIMING_ECHO_MS, TIMING_TTL_MS

ONCE_PER_PARTITION = 50  # keys seen once (`generate`)
NAMES = ("a", "b", "echo")  # the timer names commands use; "echo-2" only the topology sets
STORE = "last-seen"
OPERATOR = "timing"

# What the sink receives, as the test compares it: (key, value, timestamp).
Output = tuple[str, str, int]


@dataclass(frozen=True)
class Command:
    key: str
    ts: int
    id: int
    op: str

    def value(self) -> bytes:
        return json.dumps({"ts": self.ts, "id": self.id, "op": self.op}).encode()


def keys_of(partition: int, count: int, prefix: str = "d") -> list[str]:
    """The first `count` keys `<prefix><n>` that Kafka's default partitioner puts in
    `partition` (of `PARTITIONS`)."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        key = f"{prefix}{n}"
        if partition_for(key.encode(), PARTITIONS) == partition:
            found.append(key)
        n += 1
    return found


def _op(rng: random.Random, ts: int, record_id: int) -> str:
    """55% writes, 30% timers set (a tenth of them in the past, due at once; the rest up to
    1.5 s ahead), 15% cancels."""
    roll = rng.random()
    if roll < 0.55:
        return f"read:{record_id}"
    name = rng.choice(NAMES)
    if roll < 0.85:
        at = ts - rng.randrange(300) if rng.random() < 0.1 else ts + rng.randrange(1, 1_500)
        return f"set:{name}:{max(0, at)}"
    return f"cancel:{name}"


def generate(
    seed: int,
    records_per_partition: int,
    *,
    keys_per_partition: int = 16,
    start_ms: int = 1_000_000,
) -> list[list[Command]]:
    """Per partition, commands for its own keys in bounded disorder: event time moves 0-29 ms a
    record; 80% of the records are on time, 20% up to 500 ms behind. About a third of the keys
    are active at a time, and a few percent of the records switch one on or off: keys go quiet
    longer than the TTL (and expire), and timers are replaced, cancelled and left to fire.
    Every 2% of the records, a key seen once: one write and a timer "long" 5-15 s ahead, then
    nothing more; so whenever a worker is killed, some keys last written and timers set before
    it expire and fire after it (under a new owner, or one that restored them)."""
    rng = random.Random(seed)
    partitions: list[list[Command]] = []
    next_id = 0
    for p in range(PARTITIONS):
        keys = keys_of(p, keys_per_partition + ONCE_PER_PARTITION)
        once = dict(
            zip(
                range(0, records_per_partition, records_per_partition // ONCE_PER_PARTITION),
                keys[keys_per_partition:],
                strict=False,
            )
        )
        keys = keys[:keys_per_partition]
        active = set(rng.sample(keys, keys_per_partition // 3))
        now = start_ms
        commands: list[Command] = []
        for i in range(records_per_partition):
            now += rng.randrange(30)
            if rng.random() < 0.03:
                active ^= {rng.choice(keys)}
                active = active or {rng.choice(keys)}
            ts = now - (rng.randrange(500) if rng.random() < 0.2 else 0)
            if i in once:
                long_at = now + rng.randrange(5_000, 15_000)
                commands.append(Command(once[i], now, next_id, f"read:{next_id}"))
                commands.append(Command(once[i], now, next_id + 1, f"set:long:{long_at}"))
                next_id += 2
            commands.append(Command(rng.choice(sorted(active)), ts, next_id, _op(rng, ts, next_id)))
            next_id += 1
        partitions.append(commands)
    return partitions


def with_tail(
    partitions: list[list[Command]], ahead_ms: int = 20_000, live: int = 3
) -> list[list[Command]]:
    """Each partition with `live` more writes, to its first keys, `ahead_ms` past its latest
    record (the first of them makes every timer and TTL of the partition due): afterwards
    those keys are live, and every other key that was written has expired."""
    tailed = []
    for p, commands in enumerate(partitions):
        end = max(c.ts for c in commands) + ahead_ms
        tail = [
            Command(key, end + i, -1 - p * live - i, f"read:tail{p}.{i}")
            for i, key in enumerate(keys_of(p, live))
        ]
        tailed.append([*commands, *tail])
    return tailed


@dataclass
class Expected:
    """What the topology must do with some input."""

    outputs: Counter[Output] = field(default_factory=Counter)
    live: dict[str, str] = field(default_factory=dict)  # key -> value, in "last-seen"
    expired: set[str] = field(default_factory=set)  # keys written, then expired (not live)
    pending: dict[tuple[str, str], int] = field(default_factory=dict)  # (key, name) -> at
    superseded: set[Output] = field(default_factory=set)  # firings replaced or cancelled
    stats: Counter[str] = field(default_factory=Counter)


def _fire_due(timers: dict[tuple[str, str], int], stream_time: int, expected: Expected) -> None:
    while True:
        due = [(at, key.encode(), name, key) for (key, name), at in timers.items()]
        due = [d for d in due if d[0] <= stream_time]
        if not due:
            return
        at, _, name, key = min(due)
        del timers[(key, name)]
        expected.outputs[(key, f"{key}|{name}|{at}", at)] += 1
        expected.stats["fired"] += 1
        if name == "echo":
            _set(timers, key, "echo-2", at + TIMING_ECHO_MS, expected)


def _set(
    timers: dict[tuple[str, str], int], key: str, name: str, at: int, expected: Expected
) -> None:
    old = timers.get((key, name))
    if old is not None:
        expected.superseded.add((key, f"{key}|{name}|{old}", old))
        expected.stats["replaced"] += 1
    timers[(key, name)] = at


def _expire(key: str, value: str, written_at: int, expected: Expected, how: str) -> None:
    at = written_at + TIMING_TTL_MS
    expected.outputs[(key, f"expired|{key}|{value}", at)] += 1
    expected.stats[how] += 1


def play(commands: Iterable[Command], expected: Expected) -> None:
    """Play one partition's commands into `expected`."""
    stream_time = -1
    timers: dict[tuple[str, str], int] = {}
    store: dict[str, tuple[str, int]] = {}  # key -> (value, written_at)
    written: set[str] = set()
    for c in commands:
        stream_time = max(stream_time, c.ts)
        kind, _, rest = c.op.partition(":")
        if kind == "set":
            name, at = rest.split(":")
            _set(timers, c.key, name, int(at), expected)
        elif kind == "cancel":
            at_ms = timers.pop((c.key, rest), None)
            if at_ms is not None:
                expected.superseded.add((c.key, f"{c.key}|{rest}|{at_ms}", at_ms))
                expected.stats["cancelled"] += 1
        else:
            old = store.get(c.key)
            if old is not None and old[1] + TIMING_TTL_MS <= stream_time:
                _expire(c.key, *old, expected, "expired on write")
            store[c.key] = (rest, stream_time)
            written.add(c.key)
        _fire_due(timers, stream_time, expected)
        for key, (value, at) in list(store.items()):
            if at + TIMING_TTL_MS <= stream_time:
                del store[key]
                _expire(key, value, at, expected, "expired by pass")
    expected.live.update({k: v for k, (v, _) in store.items()})
    expected.expired |= written - set(store)
    expected.pending.update(timers)


def reference(partitions: Sequence[Iterable[Command]]) -> Expected:
    """What the `timing` topology emits for `partitions` (each one task's input), and what
    its store and timers hold afterwards."""
    expected = Expected()
    for commands in partitions:
        play(commands, expected)
    # A superseded time may also fire legitimately (the same time set again later).
    expected.superseded -= set(expected.outputs)
    return expected


def differences(got: Iterable[Output], expected: Expected) -> list[str]:
    """How the outputs `got` differ from the reference, exactly (each expected output as many
    times as expected, nothing else): empty when they agree."""
    counted = Counter(got)
    problems = []
    missing = expected.outputs - counted
    extra = counted - expected.outputs
    superseded = [o for o in extra if o in expected.superseded]
    repeated = [o for o in extra if o in expected.outputs]
    if missing:
        problems.append(f"{sum(missing.values())} missing, e.g. {sorted(missing)[:3]}")
    if superseded:
        problems.append(f"{len(superseded)} replaced/cancelled timers fired: {superseded[:3]}")
    if repeated:
        problems.append(f"{len(repeated)} emitted more than once, e.g. {sorted(repeated)[:3]}")
    unknown = [o for o in extra if o not in expected.outputs and o not in expected.superseded]
    if unknown:
        problems.append(f"{len(unknown)} unexpected, e.g. {sorted(unknown)[:3]}")
    return problems


def read_changelog(
    bootstrap: str, topic: str, partitions: int = PARTITIONS
) -> dict[bytes, bytes | None]:
    """The latest value (None: a tombstone) per key of a changelog topic (of `partitions`
    partitions), committed records only, up to its end as of now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        ends = {}
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        latest: dict[bytes, bytes | None] = {}
        done: set[int] = set()
        deadline = time.monotonic() + 60
        while len(done) < len(ends):
            assert time.monotonic() < deadline, f"read {topic} to its end: {done} of {ends}"
            # consume() waits out its timeout unless 1000 records come: keep it short, the
            # positions say when the end is reached.
            messages = consumer.consume(1000, 0.1)
            for message in messages:
                assert message.error() is None, message.error()
                key = message.key()
                assert key is not None
                latest[key] = message.value()
            for p, end in ends.items():
                position = consumer.position([TopicPartition(topic, p)])[0].offset
                if position >= end:
                    done.add(p)
        return latest
    finally:
        consumer.close()
