"""The owner's account of its changelogs: any record it did not write is found, in a range that
holds it, and nothing is reported when only the owner wrote."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processor.state.changelog_tail import ChangelogTail

TOPICS = ("a-changelog", "b-changelog")

# One step: the owner writes n records of a topic, another worker writes n, or the owner
# checks (every record it wrote has been acknowledged then).
steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["own", "other"]), st.sampled_from(TOPICS), st.integers(1, 5)),
        st.just(("check", "", 0)),
    ),
    max_size=40,
)


@given(start=st.dictionaries(st.sampled_from(TOPICS), st.integers(0, 100)), script=steps)
def test_finds_exactly_the_ranges_that_hold_other_writers_records(
    start: dict[str, int], script: list[tuple[str, str, int]]
) -> None:
    tail = ChangelogTail(start)
    log: dict[str, list[str]] = {t: ["restored"] * (start.get(t, -1) + 1) for t in TOPICS}
    checked = {t: len(log[t]) for t in TOPICS}
    for step, topic, count in script:
        if step == "check":
            ends = {t: len(log[t]) for t in TOPICS}
            found = tail.foreign(ends)
            for t in TOPICS:
                others = [i for i in range(checked[t], ends[t]) if log[t][i] == "other"]
                if others:
                    first, end = found[t]
                    assert first <= min(others) and max(others) < end
                else:
                    assert t not in found
            tail.settle(ends)
            checked = ends
            continue
        log[topic].extend([step] * count)
        if step == "own":
            tail.wrote(topic, count)


def test_records_refused_by_the_broker_are_not_taken_for_another_writers() -> None:
    tail = ChangelogTail({"a-changelog": 9})
    tail.wrote("a-changelog", 3)
    assert tail.foreign({"a-changelog": 11}) == {}  # one of the three was refused
    tail.settle({"a-changelog": 11})
    assert tail.foreign({"a-changelog": 12}) == {"a-changelog": (11, 12)}
