"""Stores with a TTL and counts with a TTL in the test driver against the brute-force reference
(reference.py).

Random records write, delete and read keys of a store with a TTL on the stream or the wall
clock, while stream time and the wall clock advance. After every operation: the output topic
holds exactly the reference's reads and `on_expire` calls, in order and with their timestamps;
the store shows exactly the reference's unexpired keys (through `get`, `in` and `all`); and
`on_expire` has been called once per expiry (counted as firings). For `count(ttl_ms=)`, the
table's stream of changes is the reference's, tombstones included.
"""

from __future__ import annotations

from hypothesis import given, note
from hypothesis import strategies as st

from processor.testing import TopologyTestDriver
from tests.unit.timers import harness
from tests.unit.timers.harness import run_ttl
from tests.unit.timers.reference import (
    AdvanceStream,
    AdvanceWall,
    CountModel,
    Delete,
    Op,
    Pipe,
    Put,
)
from tests.unit.timers.strategies import KEYS, SETTINGS, TtlCase, ttl_cases


@SETTINGS
@given(ttl_cases)
def test_keys_expire_as_the_reference_says(case: TtlCase) -> None:
    note(repr(case))
    driver, model = run_ttl(case)
    calls = len(model.expired) if case.on_expire else 0
    assert driver.accounting.timers["fired"] == calls


def test_deleting_an_expired_key_still_reports_its_expiry() -> None:
    """Found by the property test: a delete of a key that expired but that no expiry pass
    removed yet (the record that moved time past its expiry deletes it) dropped the key without
    calling on_expire, which is called once per expiry."""
    case = TtlCase(
        ttl_ms=10,
        clock="stream",
        on_expire=True,
        start_wall=0,
        ops=[Pipe("r", 0, (Put("a", 1),)), Pipe("r", 10, (Delete("a"),))],
    )
    driver, model = run_ttl(case)
    assert model.expired == [("a", 1)]
    assert driver.accounting.timers["fired"] == 1


count_ops = st.lists(
    st.one_of(
        st.builds(Pipe, st.sampled_from(KEYS), st.integers(0, 60)),
        st.builds(Pipe, st.sampled_from(KEYS), st.integers(0, 60)),
        st.builds(AdvanceStream, st.integers(0, 80)),
        st.builds(AdvanceWall, st.integers(0, 30)),
    ),
    min_size=1,
    max_size=25,
)


@SETTINGS
@given(st.integers(1, 30), count_ops)
def test_a_count_with_a_ttl_forwards_tombstones_as_the_reference_says(
    ttl_ms: int, case: list[Op]
) -> None:
    driver = TopologyTestDriver(harness.count_topology(ttl_ms))
    model = CountModel(ttl_ms)
    for step, op in enumerate(case):
        harness.do(driver, op, value=1)
        assert harness.outputs(driver, int_values=True) == model.step(op), f"op {step}: {op}"
        store = driver.store("counts")
        assert dict(store.all()) == {
            k: n for k, (n, w) in model.counts.items() if w + ttl_ms > model.clocks.stream_time
        }
