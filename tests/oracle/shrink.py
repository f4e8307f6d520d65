"""Shrink a case on which ours and Kafka Streams disagree to a small one that still disagrees:
drop one record at a time (every candidate of a round in one JVM), then lower timestamps.

    .venv/bin/python -m tests.oracle.shrink sliding-final-3      # a case id of the oracle test
    WINDOWS_ORACLE_SEED=7 .venv/bin/python -m tests.oracle.shrink session-update-0
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

from tests.integration.test_windows_oracle import SEED, _describe, generate, mismatch, run_ours
from tests.oracle.kafka_streams import Case, run_cases


def _disagreeing(candidates: list[Case]) -> Case | None:
    """The first candidate on which ours and Kafka Streams disagree."""
    for case, theirs in zip(candidates, run_cases(candidates), strict=True):
        if mismatch(case, theirs, run_ours(case)) is not None:
            return case
    return None


def shrink(case: Case, log: Callable[[str], None] = print) -> Case:
    step = 0
    while True:
        step += 1
        records = case.records
        fewer = [
            dataclasses.replace(
                case, id=f"{case.id}~{step}-{i}", records=records[:i] + records[i + 1 :]
            )
            for i in range(len(records))
        ]
        smaller = _disagreeing(fewer)
        if smaller is None:
            break
        log(f"{len(smaller.records)} records")
        case = smaller
    shift = min(r.ts for r in case.records)
    if shift > 0 and case.window.kind != "sliding":  # sliding windows differ near 0
        step_ms = (
            2
            if case.window.kind == "session"
            else (case.window.advance_ms or case.window.size_ms or 1)
        )
        shift -= shift % step_ms
        moved = dataclasses.replace(
            case,
            id=f"{case.id}~moved",
            records=tuple(dataclasses.replace(r, ts=r.ts - shift) for r in case.records),
        )
        case = _disagreeing([moved]) or case
    return case


def main() -> None:
    wanted = sys.argv[1]
    case = next(c for c in generate(SEED) if c.id == wanted)
    small = shrink(case)
    print(_describe(small, run_cases([small])[0].outputs, run_ours(small)))


if __name__ == "__main__":
    main()
