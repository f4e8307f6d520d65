"""Global tables and the stream-global table join, through the test driver: Kafka Streams'
rules (KStreamGlobalKTableJoinProcessor), case by case, with exact outputs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from processor import GlobalTable, Topology, serdes
from processor.errors import RecordError, TopologyError
from processor.testing import TopologyTestDriver


def _enrich(how: str, **join: Any) -> tuple[Topology, GlobalTable[str, Any]]:
    t = Topology("enrich")
    countries = t.global_table(
        "countries", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde()
    )
    orders = t.stream("orders", key_serde=serdes.IntSerde(), value_serde=serdes.JsonSerde())
    orders.join(
        countries,
        lambda order, country: [order["id"], country and country["name"]],
        key=join.pop("key", lambda order_id, order: order["country"]),
        how=how,
        **join,
    ).to("out")
    return t, countries


def _driver(how: str) -> TopologyTestDriver:
    driver = TopologyTestDriver(_enrich(how)[0])
    driver.pipe("countries", "fr", {"name": "France"})
    driver.pipe("countries", "de", {"name": "Germany"})
    return driver


def _orders(driver: TopologyTestDriver) -> None:
    driver.pipe("orders", 1, {"id": "a", "country": "fr"}, timestamp=10)
    driver.pipe("orders", 2, {"id": "b", "country": "it"}, timestamp=11)  # no such row
    driver.pipe("orders", 3, {"id": "c", "country": None}, timestamp=12)  # no lookup key
    driver.pipe("orders", 4, None, timestamp=13)  # a null value: never joined
    driver.pipe("orders", None, {"id": "e", "country": "de"}, timestamp=14)  # null stream key


def test_inner_join_emits_only_records_whose_row_exists() -> None:
    driver = _driver("inner")
    _orders(driver)
    assert driver.read("out") == [(1, ["a", "France"]), (None, ["e", "Germany"])]


def test_left_join_joins_a_missing_row_or_lookup_key_with_none() -> None:
    driver = _driver("left")
    _orders(driver)
    assert driver.read("out") == [
        (1, ["a", "France"]),
        (2, ["b", None]),
        (3, ["c", None]),
        (None, ["e", "Germany"]),
    ]


def test_the_result_keeps_the_stream_records_key_and_timestamp() -> None:
    driver = _driver("inner")
    driver.pipe("orders", 7, {"id": "x", "country": "fr"}, timestamp=1234)
    [record] = driver.read_records("out")
    assert (serdes.IntSerde().deserialize(record.key), record.timestamp) == (7, 1234)


def test_updates_and_tombstones_of_the_table_are_seen_by_later_records() -> None:
    driver = _driver("left")
    driver.pipe("orders", 1, {"id": "a", "country": "fr"})
    driver.pipe("countries", "fr", {"name": "République française"})
    driver.pipe("orders", 2, {"id": "b", "country": "fr"})
    driver.pipe("countries", "fr", None)  # a tombstone deletes the row
    driver.pipe("orders", 3, {"id": "c", "country": "fr"})
    assert driver.read("out") == [
        (1, ["a", "France"]),
        (2, ["b", "République française"]),
        (3, ["c", None]),
    ]
    assert list(driver.global_store("countries").all()) == [("de", {"name": "Germany"})]


def test_table_updates_emit_nothing() -> None:
    driver = _driver("left")
    driver.pipe("countries", "it", {"name": "Italy"})
    assert driver.read("out") == []


def test_the_default_lookup_key_is_the_records_key() -> None:
    t = Topology("by-key")
    rates = t.global_table("rates", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
    t.stream("prices", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde()).join(
        rates, lambda price, rate: price * rate
    ).to("out")
    driver = TopologyTestDriver(t)
    driver.pipe("rates", "eur", 3)
    driver.pipe("prices", "eur", 5)
    driver.pipe("prices", "usd", 5)
    assert driver.read("out") == [("eur", 15)]


def test_a_lookup_key_of_another_type_than_the_stream_key() -> None:
    t = Topology("typed")
    users = t.global_table("users", key_serde=serdes.IntSerde(), value_serde=serdes.StringSerde())
    clicks = t.stream("clicks", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
    clicks.join(users, lambda click, user: f"{user}:{click['page']}", key=lambda k, v: v["uid"]).to(
        "out", value_serde=serdes.StringSerde()
    )
    driver = TopologyTestDriver(t)
    driver.pipe("users", 42, "ada")
    driver.pipe("clicks", "session-1", {"uid": 42, "page": "/home"})
    assert driver.read("out") == [("session-1", "ada:/home")]


def test_a_lookup_key_the_tables_key_serde_cannot_write_is_a_processing_error() -> None:
    t, _ = _enrich("inner", key=lambda k, v: 3.5)
    driver = TopologyTestDriver(t)
    with pytest.raises(RecordError) as raised:
        driver.pipe("orders", 1, {"id": "a", "country": "fr"})
    message = str(raised.value)
    assert "orders[0]@0" in message
    assert "lookup key 3.5 cannot be looked up in global table 'countries'" in message


def test_a_record_with_a_null_key_is_skipped_with_its_position(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = _driver("inner")
    with caplog.at_level(logging.WARNING, logger="processor.global"):
        driver.pipe_bytes("countries", None, b'{"name": "Nowhere"}')
    assert "countries[0]@2: it has a null key" in caplog.text
    assert [k for k, _ in driver.global_store("countries").all()] == ["de", "fr"]


def test_an_undecodable_record_fails_by_default_naming_it() -> None:
    driver = _driver("inner")
    with pytest.raises(RecordError) as raised:
        driver.pipe_bytes("countries", b"es", b"{not json")
    assert str(raised.value).startswith("record countries[0]@2: global table 'countries' cannot")
    assert "es" not in driver.global_store("countries")


def test_an_undecodable_record_is_skipped_when_the_table_says_so() -> None:
    t = Topology("skip")
    t.global_table(
        "countries",
        key_serde=serdes.StringSerde(),
        value_serde=serdes.JsonSerde(),
        on_deserialization_error="skip",
    )
    driver = TopologyTestDriver(t)
    driver.pipe_bytes("countries", b"es", b"{not json")
    driver.pipe_bytes("countries", b"pt", b'{"name": "Portugal"}')
    assert list(driver.global_store("countries").all()) == [("pt", {"name": "Portugal"})]


def test_describe_lists_the_join_and_the_global_store() -> None:
    t, _ = _enrich("left", name="with-country")
    assert t.describe() == "\n".join(
        [
            "Topology: enrich",
            "  Sub-topology 0",
            "    Source: source-0 (topic: orders, key: int, value: json) --> with-country",
            "    Processor: with-country (global_join, left, global store: countries, key=fn)"
            " --> sink-1 <-- source-0",
            "    Sink: sink-1 (topic: out, key: int, value: json) <-- with-country",
            "  Global store countries (topic: countries, key: string, value: json; read whole by"
            " every worker, no tasks)",
        ]
    )


def test_a_global_table_makes_no_task_and_no_changelog() -> None:
    t, _ = _enrich("inner")
    [sub] = t.subtopologies()
    assert (sub.source_topics, sub.changelog_topics) == (("orders",), {})


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            lambda t, g: t.stream("countries"),
            "topic 'countries' is already a source of this topology",
        ),
        (
            lambda t, g: t.global_table(
                "other",
                key_serde=serdes.StringSerde(),
                value_serde=serdes.StringSerde(),
                name="countries",
            ),
            "two stores are named 'countries'",
        ),
        (lambda t, g: t.add_store("countries"), "two stores are named 'countries'"),
        (
            lambda t, g: t.stream("s").join(g, lambda a, b: a, how="outer"),
            "how='outer' is not one of 'inner', 'left'",
        ),
        (
            lambda t, g: t.stream("s").join(g, lambda a, b: a, window=object()),
            "a join with a global table takes no window=",
        ),
        (lambda t, g: t.stream("s").join(g, "not a function"), "joiner must be a function"),
        (
            lambda t, g: Topology("other").stream("s").join(g, lambda a, b: a),
            "global table 'countries' belongs to another Topology",
        ),
    ],
)
def test_declarations_the_topology_refuses(declare: Any, message: str) -> None:
    t = Topology("refusals")
    table = t.global_table(
        "countries", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde()
    )
    with pytest.raises(TopologyError) as raised:
        declare(t, table)
    assert message in str(raised.value)


def test_the_driver_names_an_unknown_global_store() -> None:
    with pytest.raises(TopologyError, match="no global table 'cities'"):
        _driver("inner").global_store("cities")
