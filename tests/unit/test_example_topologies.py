"""The example topologies in `topologies/`, run through the in-memory driver with realistic input:
exact output, changelogs and store contents."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from processor import Topology
from processor.testing import TopologyTestDriver
from topologies import clicks_per_minute, key_stats, running_sum, wordcount

pytest_plugins = ["processor.testing.pytest_plugin"]

MakeDriver = Callable[[Topology], TopologyTestDriver]


# --- wordcount ------------------------------------------------------------------------------


def test_wordcount_lower_cases_and_splits_on_punctuation() -> None:
    driver = TopologyTestDriver(wordcount.topology)
    driver.pipe("sentences", None, "The cat sat on the mat.")
    driver.pipe("sentences", "line-2", "THE CAT! Don't stop -- the cat's hat, on-the-mat?")
    assert driver.read("word-counts") == [
        ("the", 1),
        ("cat", 1),
        ("sat", 1),
        ("on", 1),
        ("the", 2),
        ("mat", 1),
        ("the", 3),
        ("cat", 2),
        ("don't", 1),
        ("stop", 1),
        ("the", 4),
        ("cat's", 1),
        ("hat", 1),
        ("on", 2),
        ("the", 5),
        ("mat", 2),
    ]
    assert list(driver.store("counts").all()) == [
        ("cat", 2),
        ("cat's", 1),
        ("don't", 1),
        ("hat", 1),
        ("mat", 2),
        ("on", 2),
        ("sat", 1),
        ("stop", 1),
        ("the", 5),
    ]


def test_wordcount_keeps_digits_underscores_and_accents_in_words() -> None:
    driver = TopologyTestDriver(wordcount.topology)
    driver.pipe("sentences", None, "Route_66, route_66 and CAFÉ café 2024")
    assert driver.read("word-counts") == [
        ("route_66", 1),
        ("route_66", 2),
        ("and", 1),
        ("café", 1),
        ("café", 2),
        ("2024", 1),
    ]


def test_wordcount_ignores_empty_and_null_lines() -> None:
    driver = TopologyTestDriver(wordcount.topology)
    for line in [None, "", "   ", "...!?", "word"]:
        driver.pipe("sentences", None, line)
    assert driver.read("word-counts") == [("word", 1)]
    assert list(driver.store("counts").all()) == [("word", 1)]


def test_wordcount_changelog_has_each_word_once_per_commit() -> None:
    driver = TopologyTestDriver(wordcount.topology)
    driver.pipe("sentences", None, "to be or not to be")
    assert driver.read("wordcount-counts-changelog") == [
        ("to", 2),
        ("be", 2),
        ("or", 1),
        ("not", 1),
    ]
    driver.pipe("sentences", None, "be quick")
    assert driver.read("wordcount-counts-changelog") == [("be", 3), ("quick", 1)]


def test_wordcount_rekeys_through_its_repartition_topic() -> None:
    subs = wordcount.topology.subtopologies()
    assert [s.source_topics for s in subs] == [("sentences",), ("wordcount-words-repartition",)]
    assert [s.external_sink_topics for s in subs] == [(), ("word-counts",)]
    assert subs[1].changelog_topics == {"counts": "wordcount-counts-changelog"}


def test_wordcount_writes_counts_as_64_bit_integers() -> None:
    driver = TopologyTestDriver(wordcount.topology)
    driver.pipe("sentences", None, "hi hi")
    records = driver.read_records("word-counts")
    assert [(r.key, r.value) for r in records] == [
        (b"hi", (1).to_bytes(8, "big")),
        (b"hi", (2).to_bytes(8, "big")),
    ]


def test_wordcount_through_the_pytest_fixture(topology_driver: MakeDriver) -> None:
    driver = topology_driver(wordcount.topology)
    driver.pipe("sentences", None, "Hello, hello HELLO world")
    assert driver.read("word-counts") == [("hello", 1), ("hello", 2), ("hello", 3), ("world", 1)]
    assert dict(driver.store("counts").all()) == {"hello": 3, "world": 1}


def test_the_fixture_gives_an_independent_driver_each_time(topology_driver: MakeDriver) -> None:
    first = topology_driver(wordcount.topology)
    second = topology_driver(wordcount.topology)
    first.pipe("sentences", None, "one")
    assert list(second.store("counts").all()) == []
    assert first.store("counts").get("one") == 1


# --- running_sum ----------------------------------------------------------------------------


def test_running_sum_emits_when_the_threshold_is_reached_and_starts_again() -> None:
    assert running_sum.THRESHOLD == 100
    driver = TopologyTestDriver(running_sum.topology)
    for amount in [40, 50, 9]:
        driver.pipe("amounts", "acct", amount)
    assert driver.read("sums-reached") == []
    assert driver.store("sums").get("acct") == 99
    driver.pipe("amounts", "acct", 1)  # exactly the threshold counts as reaching it
    assert driver.read("sums-reached") == [("acct", 100)]
    assert driver.store("sums").get("acct") is None
    driver.pipe("amounts", "acct", 30)
    driver.pipe("amounts", "acct", 250)  # one big amount crosses on its own; all of it goes out
    assert driver.read("sums-reached") == [("acct", 280)]
    driver.pipe("amounts", "acct", 5)
    assert driver.read("sums-reached") == []
    assert list(driver.store("sums").all()) == [("acct", 5)]


def test_running_sum_keeps_interleaved_keys_apart() -> None:
    driver = TopologyTestDriver(running_sum.topology)
    amounts = [
        ("alice", 60),
        ("bob", 30),
        ("carol", 100),
        ("alice", 50),
        ("bob", 30),
        ("alice", 20),
        ("bob", 45),
        ("carol", 99),
        ("alice", 70),
    ]
    for key, amount in amounts:
        driver.pipe("amounts", key, amount)
    assert driver.read("sums-reached") == [("carol", 100), ("alice", 110), ("bob", 105)]
    assert list(driver.store("sums").all()) == [("alice", 90), ("carol", 99)]


def test_running_sum_changelog_deletes_a_key_when_its_sum_resets() -> None:
    driver = TopologyTestDriver(running_sum.topology)
    for key, amount in [("a", 70), ("b", 10), ("a", 30), ("a", 1)]:
        driver.pipe("amounts", key, amount)
    assert driver.read("running-sum-sums-changelog") == [
        ("a", 70),
        ("b", 10),
        ("a", None),  # a tombstone: after a restore the sum starts again from zero too
        ("a", 1),
    ]


def test_running_sum_counts_negative_amounts() -> None:
    driver = TopologyTestDriver(running_sum.topology)
    for amount in [90, -50, 55, 5]:
        driver.pipe("amounts", "k", amount)
    assert driver.read("sums-reached") == [("k", 100)]


# --- key_stats ------------------------------------------------------------------------------


def test_key_stats_count_min_max_mean_are_exact() -> None:
    driver = TopologyTestDriver(key_stats.topology)
    events = [
        ("sensor-1", {"value": 10}),
        ("sensor-2", {"value": -3.5, "unit": "C"}),
        ("sensor-1", {"value": 2.5}),
        ("sensor-1", {"value": 4}),
        ("sensor-2", {"value": 1.5}),
    ]
    for key, event in events:
        driver.pipe("events", key, event)
    assert driver.read("key-stats") == [
        ("sensor-1", {"count": 1, "min": 10.0, "max": 10.0, "sum": 10.0, "mean": 10.0}),
        ("sensor-2", {"count": 1, "min": -3.5, "max": -3.5, "sum": -3.5, "mean": -3.5}),
        ("sensor-1", {"count": 2, "min": 2.5, "max": 10.0, "sum": 12.5, "mean": 6.25}),
        ("sensor-1", {"count": 3, "min": 2.5, "max": 10.0, "sum": 16.5, "mean": 5.5}),
        ("sensor-2", {"count": 2, "min": -3.5, "max": 1.5, "sum": -2.0, "mean": -1.0}),
    ]
    assert dict(driver.store("stats").all()) == {
        "sensor-1": {"count": 3, "min": 2.5, "max": 10.0, "sum": 16.5, "mean": 5.5},
        "sensor-2": {"count": 2, "min": -3.5, "max": 1.5, "sum": -2.0, "mean": -1.0},
    }


@pytest.mark.parametrize(
    "raw",
    [
        b'{"value": "12"}',
        b'{"value": null}',
        b'{"value": true}',
        b'{"value": [1]}',
        b'{"other": 1}',
        b"[1, 2]",
        b"42",
        b'"text"',
        b"null",
        b'{"value": NaN}',
        b'{"value": Infinity}',
        b'{"value": 1e999}',
        b'{"value": ' + b"9" * 400 + b"}",
    ],
)
def test_key_stats_skips_events_without_a_usable_number(raw: bytes) -> None:
    driver = TopologyTestDriver(key_stats.topology)
    driver.pipe("events", "k", {"value": 3})
    driver.pipe_bytes("events", b"k", raw)
    driver.pipe("events", "k", {"value": 5})
    assert [stats["count"] for _key, stats in driver.read("key-stats")] == [1, 2]
    assert driver.store("stats").get("k") == {
        "count": 2,
        "min": 3.0,
        "max": 5.0,
        "sum": 8.0,
        "mean": 4.0,
    }


def test_key_stats_skips_a_null_value_and_counts_zero() -> None:
    driver = TopologyTestDriver(key_stats.topology)
    driver.pipe("events", "k", None)
    driver.pipe("events", "k", {"value": 0})
    driver.pipe("events", "k", {"value": 0.0})
    assert driver.read("key-stats") == [
        ("k", {"count": 1, "min": 0.0, "max": 0.0, "sum": 0.0, "mean": 0.0}),
        ("k", {"count": 2, "min": 0.0, "max": 0.0, "sum": 0.0, "mean": 0.0}),
    ]


def test_key_stats_changelog_matches_the_store(topology_driver: MakeDriver) -> None:
    driver = topology_driver(key_stats.topology)
    for value in [1, 2, 3]:
        driver.pipe("events", "a", {"value": value})
    changelog = driver.read("key-stats-stats-changelog")
    assert [stats["count"] for _key, stats in changelog] == [1, 2, 3]
    assert changelog[-1] == ("a", driver.store("stats").get("a"))
    assert changelog[-1][1]["mean"] == 2.0


# --- clicks per minute ----------------------------------------------------------------------


def test_clicks_per_minute_counts_each_users_minute_once_when_it_closes() -> None:
    driver = TopologyTestDriver(clicks_per_minute.topology)
    minute = 60_000
    clicks = [
        ("ann", 0 * minute + 1_000),
        ("bob", 0 * minute + 2_000),
        ("ann", 0 * minute + 59_000),
        ("ann", 1 * minute + 1_000),
        ("bob", 0 * minute + 50_000),  # out of order, within the 5 s grace: counted
        ("ann", 1 * minute + 6_000),  # minute 0 closes (ends at 60 s, + 5 s grace)
        ("bob", 0 * minute + 3_000),  # too late: minute 0 has closed
        ("ann", 3 * minute),
    ]
    for user, ts in clicks:
        driver.pipe("clicks", user, {"page": "/", "ts": ts}, timestamp=10**12)
    assert driver.read("clicks-per-minute-out") == [
        ("ann@0", 2),
        ("bob@0", 2),
        ("ann@60000", 2),
    ]
    # Kept for size + grace after closing: minute 0 is gone by minute 3, minute 1 is not.
    kept = driver.window_store("clicks-per-minute").fetch("ann")
    assert [(w.start_ms, n) for w, n in kept] == [(minute, 2), (3 * minute, 1)]


def test_clicks_without_a_time_of_their_own_count_at_their_record_time() -> None:
    driver = TopologyTestDriver(clicks_per_minute.topology)
    driver.pipe("clicks", "cy", "not an object", timestamp=5_000)
    driver.pipe("clicks", "cy", {"ts": True}, timestamp=6_000)
    [(window, n)] = driver.window_store("clicks-per-minute").fetch("cy")
    assert (window.start_ms, n) == (0, 2)
