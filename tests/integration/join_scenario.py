"""Input for the join fault tests (`test_joins_faults.py`), what the join topologies must emit for
it, computed here from the input alone, and the producer that writes it.

Each scenario is, per partition, one timeline of records of two topics (`JoinRecord.source`
names the topic's environment variable), produced by `produce_with_kills` a step at a time (step
`s` holds the timeline's records `s * size` to `(s + 1) * size - 1`, for every partition, and is
on the broker before step `s + 1` is produced). Records are written to their partition number
in both topics (keys come from `keys_of`, so Kafka's default partitioner agrees) with their
timestamp (from `now_ms()` on) as the record's timestamp, which is what timestamp-synchronised
input orders a task's inputs by (README "Stream-table joins").

Two things decide what a join task emits: the records, and the order in which it processes the
two topics' records of its partition. That order is the timestamp order whenever both records
are buffered, and the task waits for an empty input while it knows of records on the broker or
does not know yet (after an assignment); otherwise it depends on fetch timing. So a record of
one topic can be processed before a record of the other produced earlier only when that one
was not fetched yet: within a step, or a few steps at most (the worker fetches both topics of a
task from the one broker in the same requests). Each scenario is built so that its output does
not depend on the order within that margin, and the module checks that it is
(`check_enrichment`, `check_click_stream`):

- **enrichment** (`enrichment`, the stream-table join `stream_table_scenario:enrich`): orders and
  customer updates in one timeline whose timestamps increase; no order is within
  `QUIET_STEPS` steps of an update of its customer, either way. So an order is processed after
  every update of its customer from earlier steps and before every update from later ones, and
  the customer row it sees is the last one before it in the timeline;
- **click stream** (`click_stream`, the stream-stream joins of `worker_topologies:click_through`):
  impressions and clicks with out-of-order timestamps; the grace is large enough that no record
  is late even if the task had processed every record produced up to `LATE_MARGIN_STEPS` steps
  after it. Without late records a stream-stream join's results do not depend on the order of
  processing: each matching pair is emitted once, when the second of the two is processed, and
  an impression that matches nothing is emitted once, when stream time has passed its
  retention (which, were a match processed later, would make that match late).
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, Producer

from tests.integration.timer_scenario import keys_of
from tests.integration.window_scenario import Producible
from tests.integration.workers import PARTITIONS
from tests.worker_topologies import CLICK_WINDOW

FIRST = "TEST_SOURCE_TOPIC"  # orders; impressions (the joins' left side)
SECOND = "TEST_SECOND_SOURCE_TOPIC"  # customers; clicks
# The steps `produce_with_kills` produces a scenario in, unless a test says otherwise (one
# whose third kill waits for a worker coming back 9 s after the second takes 400).
BATCHES = 340
# Steps between an order and any update of its customer. A step is on the broker before the
# next one is produced, and the producer pauses 60 ms between steps: 8 steps are half a second,
# many fetch round trips of a worker, which fetches both topics of a task in one request.
QUIET_STEPS = 8
# A click-stream record is not late even after every record of the next 10 steps (~0.7 s).
LATE_MARGIN_STEPS = 10

# What the sink receives, as the test compares it: (key, value, timestamp).
Output = tuple[str, str, int]


@dataclass(frozen=True)
class JoinRecord:
    """A record of one of the two topics: `source` is the environment variable naming it;
    `text` None is a tombstone."""

    source: str
    key: str
    ts: int
    text: str | None

    def value(self) -> bytes | None:
        return None if self.text is None else self.text.encode()


class JoinProducer:
    """Produces `JoinRecord`s to their topic (`topics[record.source]`) and partition, with their
    timestamp, and waits until the broker has every one (acks=all)."""

    def __init__(self, bootstrap: str, topics: Mapping[str, str]) -> None:
        self._topics = dict(topics)
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})

    def send(self, batch: Iterable[tuple[int, Producible]], timeout: float = 30.0) -> None:
        errors: list[str] = []

        def on_delivery(error: object, _message: object) -> None:
            if error is not None:
                errors.append(str(error))

        for partition, record in batch:
            assert isinstance(record, JoinRecord), record
            self._producer.produce(
                self._topics[record.source],
                key=record.key.encode(),
                value=record.value(),
                partition=partition,
                timestamp=record.ts,
                on_delivery=on_delivery,
            )
        left = self._producer.flush(timeout)
        if left or errors:
            raise KafkaException(f"{left} records unacknowledged, errors {errors}")


def now_ms() -> int:
    """Where a scenario's timestamps start: now. They are the records' timestamps (and the
    outputs'), and the broker deletes by time (retention.ms, 7 days by default, checked every
    5 minutes) the segments whose records are older: timestamps near 1970 would make input and
    output disappear under the workers and the reader, whenever that check comes."""
    return int(time.time() * 1000)


def step_size(partitions: Sequence[Sequence[object]], batches: int = BATCHES) -> int:
    """How many records of each timeline `produce_with_kills` produces per step."""
    return math.ceil(max(map(len, partitions)) / batches)


def differences(got: Iterable[Output], expected: Counter[Output]) -> list[str]:
    """How the outputs `got` differ from `expected`, exactly (each expected output as many times
    as expected, nothing else): empty when they agree."""
    counted = Counter(got)
    problems = []
    missing = expected - counted
    extra = counted - expected
    repeated = sorted(o for o in extra if o in expected)
    unexpected = sorted(o for o in extra if o not in expected)
    if missing:
        problems.append(f"{sum(missing.values())} missing, e.g. {sorted(missing)[:3]}")
    if repeated:
        problems.append(f"{len(repeated)} emitted more than once, e.g. {repeated[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
    return problems


# -- enrichment: orders (FIRST) left-joined with the customers table (SECOND) -----------------


def enrichment(
    seed: int,
    records_per_partition: int,
    *,
    customers_per_partition: int = 16,
    start_ms: int,
    batches: int = BATCHES,
) -> list[list[JoinRecord]]:
    """Per partition, a timeline of orders (`o<n>`, keyed by customer) and updates of its
    customers (`<customer>@v<n>`; a tenth of the updates after a customer's first are
    tombstones), timestamps 1-19 ms apart. Customers exist only from their first update, so the
    first orders of each find none. Up to half the customers are quiet at a time: an
    update is planned `QUIET_STEPS` steps ahead, its customer takes no order from then until
    `QUIET_STEPS` steps after it, and takes orders in between quiet spells."""
    rng = random.Random(seed)
    quiet = QUIET_STEPS * math.ceil(records_per_partition / batches)
    partitions: list[list[JoinRecord]] = []
    next_order = 0
    for p in range(PARTITIONS):
        customers = keys_of(p, customers_per_partition, prefix="c")
        versions: Counter[str] = Counter()
        planned: list[tuple[int, str]] = []  # (index of the update, customer)
        quiet_until: dict[str, int] = {}  # customer -> last index of its quiet spell
        ts = start_ms
        timeline: list[JoinRecord] = []
        for i in range(records_per_partition):
            ts += rng.randrange(1, 20)
            calm = [c for c in customers if quiet_until.get(c, -1) < i]
            if len(calm) > customers_per_partition // 2 and rng.random() < 0.08:
                customer = rng.choice(calm)
                planned.append((i + quiet, customer))
                quiet_until[customer] = i + 2 * quiet
                calm.remove(customer)
            if planned and planned[0][0] <= i:
                _, customer = planned.pop(0)
                versions[customer] += 1
                version = versions[customer]
                text = None if version > 1 and rng.random() < 0.1 else f"{customer}@v{version}"
                timeline.append(JoinRecord(SECOND, customer, ts, text))
            else:
                timeline.append(JoinRecord(FIRST, rng.choice(calm), ts, f"o{next_order}"))
                next_order += 1
        partitions.append(timeline)
    return partitions


@dataclass
class Enriched:
    """What the enrichment must emit: each order once, with its customer's row as of the order
    (`outputs`); and per order, its key, timestamp and the rows its customer had after it
    (`later`, which an at-least-once retry may see)."""

    outputs: Counter[Output] = field(default_factory=Counter)
    orders: dict[str, Output] = field(default_factory=dict)  # order -> its expected output
    later: dict[str, set[str]] = field(default_factory=dict)  # order -> later rows, "None" too
    stats: Counter[str] = field(default_factory=Counter)


def enrichment_reference(partitions: Sequence[Sequence[JoinRecord]]) -> Enriched:
    """Plays each partition's timeline: an update sets (or deletes) its customer's row, an
    order is emitted as `"<order>+<row or None>"` at its own timestamp."""
    expected = Enriched()
    for timeline in partitions:
        table: dict[str, str | None] = {}
        rows_after: dict[str, set[str]] = {}  # customer -> its rows from here on, backwards
        for record in reversed(timeline):
            if record.source == SECOND:
                rows_after.setdefault(record.key, set()).add(str(record.text))
            else:
                expected.later[str(record.text)] = set(rows_after.get(record.key, ()))
        for record in timeline:
            if record.source == SECOND:
                table[record.key] = record.text
                expected.stats["deletions" if record.text is None else "updates"] += 1
                continue
            order = str(record.text)
            row = table.get(record.key)
            output = (record.key, f"{order}+{row}", record.ts)
            expected.outputs[output] += 1
            expected.orders[order] = output
            if row is None:
                case = "deleted" if record.key in table else "not yet created"
                expected.stats[f"orders of a customer {case}"] += 1
            elif int(row.split("@v")[1]) >= 3:
                expected.stats["orders seeing version 3+"] += 1
    return expected


def check_enrichment(
    partitions: Sequence[Sequence[JoinRecord]], batches: int = BATCHES
) -> Enriched:
    """The reference for `partitions`, after checking what makes it exact: timestamps increase
    along each timeline, and no order is within `QUIET_STEPS` steps of an update of its
    customer; and that the input has every case the test is about."""
    size = step_size(partitions, batches)
    for timeline in partitions:
        assert all(a.ts < b.ts for a, b in itertools.pairwise(timeline))
        updates: dict[str, list[int]] = {}
        for i, record in enumerate(timeline):
            if record.source == SECOND:
                updates.setdefault(record.key, []).append(i // size)
        for i, record in enumerate(timeline):
            if record.source == FIRST:
                near = [s for s in updates.get(record.key, []) if abs(s - i // size) < QUIET_STEPS]
                assert not near, f"order {record} is within {QUIET_STEPS} steps of {near}"
    expected = enrichment_reference(partitions)
    for case in ("updates", "deletions", "orders of a customer not yet created"):
        assert expected.stats[case] > 0, f"no case {case!r}: {expected.stats}"
    for case in ("orders of a customer deleted", "orders seeing version 3+"):
        assert expected.stats[case] > 0, f"no case {case!r}: {expected.stats}"
    return expected


# -- click stream: impressions (FIRST) joined with clicks (SECOND) in CLICK_WINDOW -------------

BEFORE_MS, AFTER_MS = CLICK_WINDOW.before_ms, CLICK_WINDOW.after_ms
RETENTION_MS = CLICK_WINDOW.retention_ms
FLUSH_AHEAD_MS = 10_000  # past the retention of every impression


def click_stream(
    seed: int, records_per_partition: int, *, start_ms: int, keys_per_partition: int = 8
) -> list[list[JoinRecord]]:
    """Per partition, a timeline of impressions (`i<n>`) and clicks (`c<n>`), each side of its
    own rotating set of active keys (a few percent of the records switch one on or off), so some
    keys see both sides at once and some one side only. Event time moves 0-19 ms a record
    (equal timestamps happen); 70% of the records are on time, 30% up to 300 ms behind. The
    timeline ends with an impression and a click of key `<prefix>end`, 1 ms after its latest
    record: they match, and their inner result tells that the task has processed every record
    of the timeline (they are the last of their topic partitions)."""
    rng = random.Random(seed)
    partitions: list[list[JoinRecord]] = []
    next_id = 0
    for p in range(PARTITIONS):
        keys = keys_of(p, keys_per_partition, prefix="ad")
        active = {side: set(rng.sample(keys, keys_per_partition // 2)) for side in (FIRST, SECOND)}
        now = start_ms
        timeline: list[JoinRecord] = []
        for _ in range(records_per_partition):
            now += rng.randrange(20)
            side = rng.choice((FIRST, SECOND))
            if rng.random() < 0.04:
                active[side] ^= {rng.choice(keys)}
                active[side] = active[side] or {rng.choice(keys)}
            behind = 0 if rng.random() < 0.7 else rng.randrange(300)
            text = f"{'i' if side == FIRST else 'c'}{next_id}"
            timeline.append(JoinRecord(side, rng.choice(sorted(active[side])), now - behind, text))
            next_id += 1
        end = max(r.ts for r in timeline) + 1
        timeline.append(JoinRecord(FIRST, end_key(p), end, f"i{next_id}"))
        timeline.append(JoinRecord(SECOND, end_key(p), end, f"c{next_id + 1}"))
        next_id += 2
        partitions.append(timeline)
    return partitions


def end_key(partition: int) -> str:
    return f"p{partition}end"


def flush_records(partitions: Sequence[Sequence[JoinRecord]]) -> list[tuple[int, JoinRecord]]:
    """Per partition, a click `FLUSH_AHEAD_MS` past its timeline, of a key nothing else has: to
    be produced once every record of the timelines is processed; its stream time closes every
    impression's window."""
    return [
        (p, JoinRecord(SECOND, f"p{p}flush", max(r.ts for r in timeline) + FLUSH_AHEAD_MS, "f"))
        for p, timeline in enumerate(partitions)
    ]


@dataclass
class Clicked:
    """What the click-through joins must emit, and counts of the cases the input has."""

    outputs: Counter[Output] = field(default_factory=Counter)
    stats: Counter[str] = field(default_factory=Counter)


def click_reference(partitions: Sequence[Sequence[JoinRecord]]) -> Clicked:
    """Per key, every (impression, click) with `impression.ts - BEFORE_MS <= click.ts <=
    impression.ts + AFTER_MS`, once for each join, at the later timestamp; and once for the left
    join each impression that has no such click, at its own timestamp, as its partition's final
    stream time (with `flush_records`) is past its retention."""
    expected = Clicked()
    for timeline in partitions:
        final_stream_time = max(r.ts for r in timeline) + FLUSH_AHEAD_MS
        clicks: dict[str, list[JoinRecord]] = {}
        for record in timeline:
            if record.source == SECOND:
                clicks.setdefault(record.key, []).append(record)
        for impression in (r for r in timeline if r.source == FIRST):
            matched = False
            for click in clicks.get(impression.key, []):
                delta = click.ts - impression.ts
                if delta in (-BEFORE_MS - 1, AFTER_MS + 1):
                    expected.stats["a ms outside the window"] += 1
                if not -BEFORE_MS <= delta <= AFTER_MS:
                    continue
                matched = True
                ts = max(impression.ts, click.ts)
                pair = f"{impression.text}+{click.text}"
                expected.outputs[(impression.key, f"inner:{pair}", ts)] += 1
                expected.outputs[(impression.key, f"left:{pair}", ts)] += 1
                if delta in (-BEFORE_MS, AFTER_MS):
                    expected.stats["on the window's edge"] += 1
                if delta == 0:
                    expected.stats["same timestamp"] += 1
                expected.stats["pairs"] += 1
            if not matched:
                assert impression.ts + RETENTION_MS < final_stream_time
                unmatched = (impression.key, f"left:{impression.text}+None", impression.ts)
                expected.outputs[unmatched] += 1
                expected.stats["impressions without a click"] += 1
    return expected


def check_click_stream(
    partitions: Sequence[Sequence[JoinRecord]], batches: int = BATCHES
) -> Clicked:
    """The reference for `partitions`, after checking what makes it exact: no record is late
    (its stream time past `ts + AFTER_MS + grace`, for an impression; `BEFORE_MS` for a click)
    even with every record of the next `LATE_MARGIN_STEPS` steps processed before it; and that
    the input has every case the test is about."""
    size = step_size(partitions, batches)
    grace = CLICK_WINDOW.grace_ms
    for timeline in partitions:
        latest = list(itertools.accumulate((r.ts for r in timeline), max))
        for i, record in enumerate(timeline):
            seen = latest[min(len(timeline), (i // size + 1 + LATE_MARGIN_STEPS) * size) - 1]
            end = AFTER_MS if record.source == FIRST else BEFORE_MS
            assert seen <= record.ts + end + grace, f"{record} may be late (stream time {seen})"
    expected = click_reference(partitions)
    for case in (
        "pairs",
        "impressions without a click",
        "on the window's edge",
        "a ms outside the window",
        "same timestamp",
    ):
        assert expected.stats[case] > 0, f"no case {case!r}: {expected.stats}"
    return expected
