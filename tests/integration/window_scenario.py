"""Event-time input for the windowed worker topologies (`tests/worker_topologies.py`), the
windows they must produce, computed here from the input alone, and a reader of what they did.

Records are produced to explicit partitions: the topologies group by key without re-keying, so
the records of one partition are the records of one task, and a task's stream time is the
largest timestamp among its partition's records so far. The reference follows the rules of
`notes/windows-design.md` record by record, per partition, in offset order:

- tumbling windows (size, grace): a record whose window has `stream time > end - 1 + grace` is
  late; a window is final once stream time passes that point;
- sessions (gap, grace): a record is late when `ts < stream time - gap - grace` or when it would
  merge a session whose end is before that point; otherwise it merges every session of its key
  with `end >= ts - gap` and `start <= ts + gap`; a session is final once
  `stream time > end + gap + grace`.

Every result carries the largest record timestamp of its window.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from tests.integration.workers import PARTITIONS

SIZE_MS = 1_000  # the tumbling windows of `windowed_counting` and `windowed_collecting`
GAP_MS = 1_000  # the sessions' inactivity gap
GRACE_MS = 500  # both


@dataclass(frozen=True)
class Event:
    key: str
    ts: int
    id: int

    def value(self) -> bytes:
        return json.dumps({"ts": self.ts, "id": self.id}).encode()


@dataclass
class Window:
    """A window as the reference builds it: the ids of its records and their largest timestamp."""

    start: int
    end: int
    ids: list[int] = field(default_factory=list)
    max_ts: int = -1

    def add(self, event: Event) -> None:
        self.ids.append(event.id)
        self.max_ts = max(self.max_ts, event.ts)


@dataclass(frozen=True)
class Final:
    """One expected final result: the window's record ids (sorted) and the result's timestamp."""

    ids: tuple[int, ...]
    timestamp: int


def generate(
    seed: int, records_per_partition: int, *, keys_per_partition: int = 8, start_ms: int = 1_000_000
) -> list[list[Event]]:
    """Per partition, records of its own keys (`p<partition>k<n>`) in bounded disorder: event
    time moves 0-24 ms per record; 70% of the records are on time, 26% up to 400 ms behind
    (within grace), 4% 500-2,500 ms behind (late, mostly). Keys come and go (a few percent of
    records switch one key on or off), so sessions start, merge and end."""
    rng = random.Random(seed)
    partitions: list[list[Event]] = []
    next_id = 0
    for p in range(PARTITIONS):
        keys = [f"p{p}k{n}" for n in range(keys_per_partition)]
        active = set(rng.sample(keys, keys_per_partition // 2))
        now = start_ms
        events: list[Event] = []
        for _ in range(records_per_partition):
            now += rng.randrange(25)
            if rng.random() < 0.03:
                active ^= {rng.choice(keys)}
                active = active or {rng.choice(keys)}
            roll = rng.random()
            behind = (
                0
                if roll < 0.7
                else rng.randrange(400)
                if roll < 0.96
                else rng.randrange(500, 2_500)
            )
            events.append(Event(rng.choice(sorted(active)), max(0, now - behind), next_id))
            next_id += 1
        partitions.append(events)
    return partitions


def with_flush(partitions: list[list[Event]], ahead_ms: int = 10_000) -> list[list[Event]]:
    """Each partition with one more record (key `p<partition>flush`), `ahead_ms` past its
    latest: its stream time then closes every earlier window."""
    return [
        [*events, Event(f"p{p}flush", max(e.ts for e in events) + ahead_ms, -1 - p)]
        for p, events in enumerate(partitions)
    ]


def tumbling_windows(events: Iterable[Event]) -> tuple[dict[tuple[str, int], Window], int, int]:
    """(key, start) -> window, the final stream time and the number of late records, for the
    records of one partition."""
    windows: dict[tuple[str, int], Window] = {}
    stream_time, late = -1, 0
    for event in events:
        stream_time = max(stream_time, event.ts)
        start = event.ts - event.ts % SIZE_MS
        if stream_time > start + SIZE_MS - 1 + GRACE_MS:
            late += 1
            continue
        windows.setdefault((event.key, start), Window(start, start + SIZE_MS)).add(event)
    return windows, stream_time, late


def sessions(events: Iterable[Event]) -> tuple[dict[str, list[Window]], int, int]:
    """key -> sessions, the final stream time and the number of late records, for the records
    of one partition."""
    by_key: dict[str, list[Window]] = {}
    stream_time, late = -1, 0
    for event in events:
        stream_time = max(stream_time, event.ts)
        # A session is closed once stream time passes its end + gap + grace; a closed session
        # is never merged again (a record near one starts its own), and a record is late when
        # the session it would make is closed (Kafka Streams' rules, README "Windows").
        open_from = stream_time - GAP_MS - GRACE_MS
        mine = by_key.setdefault(event.key, [])
        merged = [
            s
            for s in mine
            if s.end >= event.ts - GAP_MS and s.start <= event.ts + GAP_MS and s.end >= open_from
        ]
        if max([event.ts, *(s.end for s in merged)]) < open_from:
            late += 1
            continue
        session = Window(
            min([event.ts, *(s.start for s in merged)]), max([event.ts, *(s.end for s in merged)])
        )
        for old in merged:
            mine.remove(old)
            session.ids.extend(old.ids)
            session.max_ts = max(session.max_ts, old.max_ts)
        session.add(event)
        mine.append(session)
    return by_key, stream_time, late


def tumbling_finals(partitions: list[list[Event]]) -> tuple[dict[str, Final], int]:
    """`"<key>@<start>"` -> final result of every window closed by its partition's stream
    time, and how many records were late."""
    finals: dict[str, Final] = {}
    late = 0
    for events in partitions:
        windows, stream_time, partition_late = tumbling_windows(events)
        late += partition_late
        for (key, start), w in windows.items():
            if stream_time > w.end - 1 + GRACE_MS:
                finals[f"{key}@{start}"] = Final(tuple(sorted(w.ids)), w.max_ts)
    return finals, late


def session_finals(partitions: list[list[Event]]) -> tuple[dict[str, Final], int]:
    """`"<key>@<start>-<end>"` -> final result of every session closed by its partition's
    stream time, and how many records were late."""
    finals: dict[str, Final] = {}
    late = 0
    for events in partitions:
        by_key, stream_time, partition_late = sessions(events)
        late += partition_late
        for key, found in by_key.items():
            for s in found:
                if stream_time > s.end + GAP_MS + GRACE_MS:
                    finals[f"{key}@{s.start}-{s.end}"] = Final(tuple(sorted(s.ids)), s.max_ts)
    return finals, late


class Producible(Protocol):
    """A record to produce: an `Event`, or another scenario's record with a key and a value."""

    @property
    def key(self) -> str: ...

    def value(self) -> bytes | None: ...


class Sender(Protocol):
    """What produces a batch of (partition, record) pairs and waits for the broker to have
    them: `EventProducer`, or another scenario's producer (e.g. one writing two topics)."""

    def send(self, batch: Iterable[tuple[int, Producible]], timeout: float = 30.0) -> None: ...


class EventProducer:
    """Produces events (or any `Producible`) to their partition (acks=all), a batch at a
    time."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})

    def send(self, batch: Iterable[tuple[int, Producible]], timeout: float = 30.0) -> None:
        """Produce (partition, event) pairs and wait until the broker has every one."""
        errors: list[str] = []

        def on_delivery(error: object, _message: object) -> None:
            if error is not None:
                errors.append(str(error))

        for partition, event in batch:
            self._producer.produce(
                self._topic,
                key=event.key.encode(),
                value=event.value(),
                partition=partition,
                on_delivery=on_delivery,
            )
        left = self._producer.flush(timeout)
        if left or errors:
            raise KafkaException(f"{left} records unacknowledged, errors {errors}")


@dataclass(frozen=True)
class Result:
    key: str
    value: Any
    timestamp: int
    arrived: float  # time.time() when the reader got it


class Results:
    """Every record of the sink (read_committed, from the start), in arrival order; with
    `tombstones`, a record without a value is kept with value None."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        decode: Callable[[bytes], Any],
        *,
        tombstones: bool = False,
    ) -> None:
        self._decode = decode
        self._tombstones = tombstones
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "unused",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                # Arrival times measure the workers, not this reader's long polls.
                "fetch.wait.max.ms": 20,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.all: list[Result] = []

    def poll(self, seconds: float = 0.2) -> None:
        deadline = time.monotonic() + seconds
        while True:
            for message in self._consumer.consume(1000, 0.02):
                error = message.error()
                assert error is None, error
                key, value = message.key(), message.value()
                assert key is not None and (value is not None or self._tombstones)
                self.all.append(
                    Result(
                        key.decode(),
                        None if value is None else self._decode(value),
                        message.timestamp()[1],
                        time.time(),
                    )
                )
            if time.monotonic() >= deadline:
                return

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.all) < count:
            assert time.monotonic() < deadline, f"{len(self.all)} of {count} results"
            self.poll(0.1)

    def close(self) -> None:
        self._consumer.close()


def count_of(value: bytes) -> int:
    """An IntSerde value: 8 bytes, big-endian, signed."""
    return int.from_bytes(value, "big", signed=True)


def ids_of(value: bytes) -> tuple[int, ...]:
    """A `windowed_collecting` value: the JSON list of record ids."""
    return tuple(json.loads(value))
