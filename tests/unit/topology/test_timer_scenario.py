"""The reference of `tests/integration/timer_scenario.py`, which the timer fault tests compare a
real broker's output with: right on a case worked out by hand, and in agreement with the test
driver running the same `timing` topology on the generated input (one driver per partition, as
each partition is one task)."""

from __future__ import annotations

from collections import Counter

import pytest

from processor.testing import TopologyTestDriver
from tests import worker_topologies
from tests.integration.timer_scenario import (
    OPERATOR,
    STORE,
    Command,
    Output,
    differences,
    generate,
    keys_of,
    reference,
    with_tail,
)
from tests.integration.workers import PARTITIONS
from tests.worker_topologies import SINK, SOURCE, TIMING_TTL_MS, timing


def test_reference_on_a_case_worked_out_by_hand() -> None:
    assert TIMING_TTL_MS == 2_000 and worker_topologies.TIMING_ECHO_MS == 300
    commands = [
        Command("x", 1_000, 0, "set:a:1500"),  # replaced below: never fires
        Command("x", 1_100, 1, "read:v1"),  # expires at 3_100, by the pass after id 6
        Command("y", 1_200, 2, "set:a:1300"),  # fires after id 5
        Command("x", 1_250, 3, "set:a:2000"),
        Command("y", 1_000, 4, "set:b:900"),  # behind stream time, and already due
        Command("y", 1_350, 5, "set:echo:1400"),  # cancelled below
        Command("y", 1_360, 6, "cancel:echo"),
        Command("z", 1_400, 7, "read:z1"),  # expires at 3_400, on its next write
        Command("y", 1_400, 8, "set:echo:1400"),  # due at once; echo-2 at 1_700
        Command("x", 3_100, 9, "cancel:b"),  # nothing to cancel
        Command("z", 3_400, 10, "read:z2"),  # live at the end
    ]
    expected = reference([commands])
    assert expected.outputs == Counter[Output](
        {
            ("y", "y|b|900", 900): 1,
            ("y", "y|a|1300", 1_300): 1,
            ("y", "y|echo|1400", 1_400): 1,
            ("y", "y|echo-2|1700", 1_700): 1,
            ("x", "x|a|2000", 2_000): 1,
            ("x", "expired|x|v1", 3_100): 1,
            ("z", "expired|z|z1", 3_400): 1,
        }
    )
    # y's echo at 1_400 was cancelled, then set again and fired: not counted as superseded.
    assert expected.superseded == {("x", "x|a|1500", 1_500)}
    assert expected.live == {"z": "z2"} and expected.expired == {"x"} and not expected.pending
    assert expected.stats["expired on write"] == expected.stats["expired by pass"] == 1


def driver_outputs(partitions: list[list[Command]]) -> tuple[list[Output], dict[str, str]]:
    """What the test driver emits for each partition's commands, and its stores' live keys."""
    got: list[Output] = []
    live: dict[str, str] = {}
    for p, commands in enumerate(partitions):
        driver = TopologyTestDriver(timing, application_id=f"timing-{p}")
        for c in commands:
            driver.pipe(SOURCE, c.key, {"ts": c.ts, "id": c.id, "op": c.op}, timestamp=0)
        got.extend(
            (r.key.decode(), r.value.decode(), r.timestamp) for r in driver.read_records(SINK)
        )
        assert driver.timers(OPERATOR) == []
        live.update(driver.store(STORE).all())
    return got, live


@pytest.mark.parametrize(("seed", "records"), [(31, 2_500), (32, 1_500), (1, 400), (2, 400)])
def test_the_driver_agrees_with_the_reference(seed: int, records: int) -> None:
    partitions = with_tail(generate(seed=seed, records_per_partition=records))
    expected = reference(partitions)
    got, live = driver_outputs(partitions)
    assert differences(got, expected) == []
    assert live == expected.live
    assert len(expected.live) == 3 * PARTITIONS and not expected.pending


def test_keys_are_spread_as_kafkas_partitioner_does() -> None:
    for p in range(PARTITIONS):
        keys = keys_of(p, 16)
        assert len(set(keys)) == 16
        assert not set(keys) & set().union(*(keys_of(q, 16) for q in range(PARTITIONS) if q != p))
