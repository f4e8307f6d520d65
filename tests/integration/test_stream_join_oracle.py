"""Stream-stream joins give what Kafka Streams gives: the same seeded random input (out of
order, duplicated timestamps, late records, several keys, null keys and values, self-joins)
through our TopologyTestDriver and through Kafka Streams' own (`tests/oracle/join_oracle.py`,
one JVM for every case), for inner, left and outer joins.

What must be equal:
- the joined results (both sides present), after each input record, in order;
- the unmatched results (`x|null`, `null|y`) as a whole, once a last record has moved stream
  time past every window.

Where Kafka Streams is not the reference (`processor.topology.stream_stream_join` says why):
- a record whose window has closed (stream time > ts + after_ms + grace_ms; right records:
  before_ms) is late here, dropped; Kafka Streams still joins it with what its other buffer
  holds (and emits it unmatched at once). Kafka Streams' results involving such a record are
  left out.
- Kafka Streams' buffers hide a record once the newest record of that side is `before_ms +
  after_ms + grace_ms` newer (its store's retention, counted exclusively), so a record exactly
  at the edge of a window, arriving exactly at its lateness boundary, misses that match there
  (with before = after = grace = 0, no two records ever match). Those pairs are left out of
  ours.
- Records that Kafka Streams matched only with records late here, or that miss a match at that
  edge, are emitted unmatched by one side and not the other: their unmatched results are left
  out of both.
- Kafka Streams emits an unmatched record once stream time passes its own window end plus
  grace, and an out-of-order record of the other side may still match it afterwards: the
  unmatched result was spurious. Here an unmatched record waits until nothing can match it
  (ts + before_ms + after_ms + grace_ms), so those spurious results are left out of Kafka
  Streams' output, and each of ours must come out exactly when its wait ends.

The seed is printed on failure; set JOIN_ORACLE_SEED to replay one.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from processor import Topology
from processor.serdes import IntSerde, StringSerde
from processor.testing import TopologyTestDriver
from processor.windows import JoinWindows
from tests.oracle.join_oracle import JoinCase, JoinOutput, JoinRecord, run_join_cases

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("JOIN_ORACLE_SEED", "17017"))
CASES_PER_KIND = 60
KEYS = ("a", "b", "c")
FLUSH_KEY = "zz"


def _case(rng: random.Random, how: str, index: int, *, self_join: bool) -> JoinCase:
    before, after = rng.randint(0, 12), rng.randint(0, 12)
    grace = rng.choice((0, 0, rng.randint(1, 10)))
    records: list[JoinRecord] = []
    now = rng.randint(0, 5)
    for value in range(1, rng.randint(8, 30)):
        now += rng.choice((0, 0, 1, 2, 3, 5))
        ts = max(0, now - rng.choice((0, 0, 0, 1, 3, 8, 15, 30)))  # out of order, some late
        if records and rng.random() < 0.15:
            ts = records[-1].ts  # a duplicated timestamp
        side = "left" if self_join or rng.random() < 0.5 else "right"
        key: str | None = rng.choice(KEYS)
        data: int | None = value
        roll = rng.random()
        if roll < 0.03:
            key = None
        elif roll < 0.06:
            data = None
        records.append(JoinRecord(side, key, data, ts))  # type: ignore[arg-type]
    flush = max(r.ts for r in records) + before + after + grace + 1
    records.append(JoinRecord("left", FLUSH_KEY, 0, flush))
    kind = "self" if self_join else how
    return JoinCase(f"{kind}-{index}", how, before, after, grace, tuple(records), self_join)  # type: ignore[arg-type]


def _text(value: Any) -> str:
    return "null" if value is None else str(value)


def _ours(case: JoinCase) -> list[JoinOutput]:
    t = Topology("join-oracle")
    left = t.stream("left", key_serde=StringSerde(), value_serde=IntSerde())
    right = (
        left
        if case.self_join
        else t.stream("right", key_serde=StringSerde(), value_serde=IntSerde())
    )
    windows = JoinWindows(before_ms=case.before_ms, after_ms=case.after_ms, grace_ms=case.grace_ms)
    joined = left.join(
        right, lambda a, b: f"{_text(a)}|{_text(b)}", window=windows, how=case.how, name="j"
    )
    joined.to("out", value_serde=StringSerde())
    driver = TopologyTestDriver(t)
    outputs: list[JoinOutput] = []
    for index, r in enumerate(case.records):
        driver.pipe(r.side, r.key, r.value, timestamp=r.ts)
        for o in driver.read_records("out"):
            key = StringSerde().deserialize(o.key)
            value = StringSerde().deserialize(o.value)
            outputs.append(JoinOutput(index, key, value, o.timestamp))  # type: ignore[arg-type]
    return outputs


@dataclass(frozen=True)
class _Model:
    """What our rules say of a case: the values of the records late on the left side and on the
    right side (in a self-join a record is both, and may be late for one only)."""

    late_left: frozenset[str]
    late_right: frozenset[str]

    @classmethod
    def of(cls, case: JoinCase) -> _Model:
        late: dict[str, set[str]] = {"left": set(), "right": set()}
        stream_time = -1
        for r in case.records:
            stream_time = max(stream_time, r.ts)
            if r.key is None or r.value is None:
                continue
            for side in ("left", "right") if case.self_join else (r.side,):
                end = case.after_ms if side == "left" else case.before_ms
                if stream_time > r.ts + end + case.grace_ms:
                    late[side].add(str(r.value))
        return cls(frozenset(late["left"]), frozenset(late["right"]))

    def involves_late(self, output: JoinOutput) -> bool:
        left, right = _values(output)
        return left in self.late_left or right in self.late_right


def _values(output: JoinOutput) -> tuple[str, str]:
    left, right = output.value.split("|")
    return left, right


def _matched(outputs: list[JoinOutput] | tuple[JoinOutput, ...]) -> list[JoinOutput]:
    return [o for o in outputs if "null" not in _values(o)]


def _unmatched(outputs: list[JoinOutput] | tuple[JoinOutput, ...]) -> Counter[tuple[str, str, int]]:
    return Counter((o.key, o.value, o.ts) for o in outputs if "null" in _values(o))


def _kafka_streams_without_our_differences(
    outputs: tuple[JoinOutput, ...], model: _Model
) -> tuple[list[JoinOutput], set[str]]:
    """Kafka Streams' outputs without those involving records late here or its spurious
    unmatched ones; and the records it matched with late records only."""
    kept = [o for o in outputs if not model.involves_late(o)]
    matched = {side for o in _matched(kept) for side in _values(o)}
    with_late = {side for o in _matched(outputs) if model.involves_late(o) for side in _values(o)}
    spurious = [o for o in kept if "null" in _values(o) and matched & set(_values(o))]
    return [o for o in kept if o not in spurious], with_late - matched


def _hidden_by_kafka_streams(case: JoinCase, ours: list[JoinOutput]) -> set[JoinOutput]:
    """Our joined results whose older record Kafka Streams' buffer hides: its timestamp plus
    the retention is at most the newest timestamp that buffer holds."""
    retention = case.before_ms + case.after_ms + case.grace_ms
    ts_of = {str(r.value): r.ts for r in case.records if r.value is not None}
    newest = {"left": -1, "right": -1}
    before: list[dict[str, int]] = []  # newest per side before each input is joined
    for r in case.records:
        before.append(dict(newest))
        if r.key is not None and r.value is not None:
            for side in ("left", "right") if case.self_join else (r.side,):
                newest[side] = max(newest[side], r.ts)
    hidden = set()
    for o in _matched(ours):
        left, right = _values(o)
        arriving = str(case.records[o.input].value)
        seen = before[o.input]
        if right == arriving and (case.self_join or case.records[o.input].side == "right"):
            newest_left = max(seen["left"], ts_of[arriving]) if case.self_join else seen["left"]
            if ts_of[left] + retention <= newest_left:
                hidden.add(o)
        elif ts_of[right] + retention <= seen["right"]:
            hidden.add(o)
    return hidden


def _late_unmatched(case: JoinCase, ours: list[JoinOutput]) -> list[str]:
    """Our unmatched results that did not come out right after the input that moved stream
    time past their timestamp plus the retention."""
    retention = case.before_ms + case.after_ms + case.grace_ms
    times, stream_time = [], -1
    for r in case.records:
        stream_time = max(stream_time, r.ts)
        times.append(stream_time)
    return [
        f"unmatched {o} should come out after input "
        f"{next(i for i, t in enumerate(times) if t > o.ts + retention)}"
        for o in ours
        if "null" in _values(o)
        and o.key is not None
        and o.input != next(i for i, t in enumerate(times) if t > o.ts + retention)
    ]


def test_stream_stream_joins_agree_with_kafka_streams() -> None:
    rng = random.Random(SEED)
    cases = [
        _case(rng, how, i, self_join=False)
        for how in ("inner", "left", "outer")
        for i in range(CASES_PER_KIND)
    ]
    cases += [
        _case(rng, rng.choice(("inner", "left", "outer")), i, self_join=True) for i in range(20)
    ]
    results = run_join_cases(cases)
    failures: list[str] = []
    for case, result in zip(cases, results, strict=True):
        assert result.error is None, f"seed {SEED}, {case.id}: Kafka Streams failed: {result.error}"
        model = _Model.of(case)
        theirs, unsure = _kafka_streams_without_our_differences(result.outputs, model)
        ours = _ours(case)
        hidden = _hidden_by_kafka_streams(case, ours)
        unsure |= {side for o in hidden for side in _values(o)}
        ours = [o for o in ours if o not in hidden]
        ours, theirs = [
            [o for o in outputs if not ("null" in _values(o) and unsure & set(_values(o)))]
            for outputs in (ours, theirs)
        ]
        problems = _late_unmatched(case, ours)
        if _matched(ours) != _matched(theirs):
            problems.append(f"joined: ours {_matched(ours)}\n  theirs {_matched(theirs)}")
        if _unmatched(ours) != _unmatched(theirs):
            problems.append(f"unmatched: ours {_unmatched(ours)}\n  theirs {_unmatched(theirs)}")
        if problems:
            failures.append(f"{case}\n  " + "\n  ".join(problems))
    assert not failures, (
        f"seed {SEED}: {len(failures)} of {len(cases)} cases differ:\n" + "\n".join(failures[:3])
    )


def test_the_published_semantics_table_is_what_kafka_streams_gives() -> None:
    """The table of Kafka Streams' documentation that `tests/unit/dsl/test_stream_stream_join.py`
    reproduces is what Kafka Streams' own driver gives, for the three kinds."""
    from tests.unit.dsl.test_stream_stream_join import SEMANTICS_INPUT, SEMANTICS_JOINED

    records = tuple(
        JoinRecord(side, "k", None if v is None else ord(v), ts)  # type: ignore[arg-type]
        for ts, side, v in SEMANTICS_INPUT
    )
    cases = [
        JoinCase(f"table-{how}", how, 15_000, 15_000, 0, records)
        for how in ("inner", "left", "outer")
    ]  # type: ignore[arg-type]
    expected = [
        (ts, f"{ord(a)}|{ord(b)}") for ts, pairs in SEMANTICS_JOINED.items() for a, b in pairs
    ]
    for result in run_join_cases(cases):
        assert [(o.ts, o.value) for o in result.outputs] == expected, result.id
