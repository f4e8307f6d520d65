"""Table-table joins by foreign key through the test driver, output by output (Kafka Streams'
KIP-213 rules; `tests/integration/test_fk_join_oracle.py` runs generated inputs through Kafka
Streams itself): orders joined with the customer each names."""

from __future__ import annotations

from typing import Any

import pytest

from processor import Topology
from processor.errors import TopologyError
from processor.runtime.internal_topics import plan_partitions
from processor.serdes import JsonSerde, StringSerde
from processor.testing import TopologyTestDriver
from processor.topology.foreign_wire import (
    Instruction,
    Response,
    ResponseSerde,
    Subscription,
    SubscriptionSerde,
    WireFormatError,
    decode_response,
    subscribers_prefix,
    subscription_key,
    value_hash,
)

S, J = StringSerde(), JsonSerde()
RESPONSES = "shop-enriched-subscription-response-topic"


def enrich(order: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
    return {**order, "name": None if customer is None else customer["name"]}


def shop(how: str = "inner", name: str | None = "enriched") -> Topology:
    t = Topology("shop")
    orders = t.table("orders", key_serde=S, value_serde=J)
    customers = t.table("customers", key_serde=S, value_serde=J)
    orders.join(
        customers, enrich, foreign_key=lambda _k, o: o.get("customer"), how=how, name=name
    ).to_stream().to("out", key_serde=S, value_serde=J)
    return t


def order(customer: str | None, item: str = "tea") -> dict[str, Any]:
    return {"customer": customer, "item": item}


@pytest.fixture
def inner() -> TopologyTestDriver:
    return TopologyTestDriver(shop("inner"))


@pytest.fixture
def left() -> TopologyTestDriver:
    return TopologyTestDriver(shop("left"))


def test_a_left_row_joins_the_right_row_its_foreign_key_names(inner: TopologyTestDriver) -> None:
    inner.pipe("orders", "o1", order("c1"))
    assert inner.read("out") == []  # inner: no customer c1 yet
    inner.pipe("customers", "c1", {"name": "Ann"})
    assert inner.read("out") == [("o1", {"customer": "c1", "item": "tea", "name": "Ann"})]
    assert inner.store("enriched").get("o1") == {"customer": "c1", "item": "tea", "name": "Ann"}


def test_a_right_update_fans_out_to_every_subscriber(inner: TopologyTestDriver) -> None:
    inner.pipe("customers", "c1", {"name": "Ann"})
    inner.pipe("customers", "c2", {"name": "Bob"})
    for key, customer in (("o2", "c1"), ("o1", "c1"), ("o3", "c2")):
        inner.pipe("orders", key, order(customer))
    inner.read("out")
    inner.pipe("customers", "c1", {"name": "Annie"})
    # Both orders of c1, in the order of their serialized keys; o3 (c2) untouched.
    assert inner.read("out") == [
        ("o1", {"customer": "c1", "item": "tea", "name": "Annie"}),
        ("o2", {"customer": "c1", "item": "tea", "name": "Annie"}),
    ]


def test_a_changed_foreign_key_unsubscribes_from_the_old_one(inner: TopologyTestDriver) -> None:
    inner.pipe("customers", "c1", {"name": "Ann"})
    inner.pipe("customers", "c2", {"name": "Bob"})
    inner.pipe("orders", "o1", order("c1"))
    inner.pipe("orders", "o1", order("c2"))
    assert inner.read("out") == [
        ("o1", {"customer": "c1", "item": "tea", "name": "Ann"}),
        ("o1", {"customer": "c2", "item": "tea", "name": "Bob"}),
    ]
    inner.pipe("customers", "c1", {"name": "Annie"})  # o1 no longer follows c1
    assert inner.read("out") == []
    inner.pipe("orders", "o1", order("c3"))  # a customer that does not exist: the row goes
    assert inner.read("out") == [("o1", None)]


def test_an_unchanged_foreign_key_joins_again_only_when_the_right_row_is_there(
    inner: TopologyTestDriver, left: TopologyTestDriver
) -> None:
    inner.pipe("orders", "o1", order("c1"))
    inner.pipe("orders", "o1", order("c1", "cake"))
    assert inner.read("out") == []  # inner: nothing to join, nothing to retract
    left.pipe("orders", "o1", order("c1"))
    left.pipe("orders", "o1", order("c1", "cake"))
    assert left.read("out") == [
        ("o1", {"customer": "c1", "item": "tea", "name": None}),
        ("o1", {"customer": "c1", "item": "cake", "name": None}),
    ]


def test_deleting_the_left_row_deletes_the_result(
    inner: TopologyTestDriver, left: TopologyTestDriver
) -> None:
    for driver in (inner, left):
        driver.pipe("customers", "c1", {"name": "Ann"})
        driver.pipe("orders", "o1", order("c1"))
        driver.read("out")
        driver.pipe("orders", "o1", None)
        assert driver.read("out") == [("o1", None)]
        assert driver.store("enriched").get("o1") is None
        driver.pipe("customers", "c1", {"name": "Annie"})  # unsubscribed: nothing
        assert driver.read("out") == []


def test_deleting_the_right_row(inner: TopologyTestDriver, left: TopologyTestDriver) -> None:
    for driver in (inner, left):
        driver.pipe("customers", "c1", {"name": "Ann"})
        driver.pipe("orders", "o1", order("c1"))
        driver.read("out")
        driver.pipe("customers", "c1", None)
    assert inner.read("out") == [("o1", None)]
    assert left.read("out") == [("o1", {"customer": "c1", "item": "tea", "name": None})]


def test_a_null_foreign_key(inner: TopologyTestDriver, left: TopologyTestDriver) -> None:
    for driver in (inner, left):
        driver.pipe("customers", "c1", {"name": "Ann"})
        driver.pipe("orders", "o1", order(None))  # a new row without a foreign key
    assert inner.read("out") == []  # inner: skipped
    assert left.read("out") == [("o1", {"customer": None, "item": "tea", "name": None})]
    for driver in (inner, left):
        driver.pipe("orders", "o1", order("c1"))
        driver.read("out")
        driver.pipe("orders", "o1", order(None))  # the foreign key goes
    assert inner.read("out") == [("o1", None)]  # the old subscription's result is retracted
    assert left.read("out") == [("o1", {"customer": None, "item": "tea", "name": None})]


def test_a_late_response_for_a_changed_left_row_is_discarded() -> None:
    """The right side answered o1's subscription to c1, but o1 moved to c2 before the answer
    arrived: the answer carries the hash of o1's old value and must not resurrect c1."""
    driver = TopologyTestDriver(shop("inner"))
    driver.pipe("customers", "c2", {"name": "Bob"})
    driver.pipe("orders", "o1", order("c1"))
    driver.pipe("orders", "o1", order("c2"))
    assert driver.read("out") == [("o1", {"customer": "c2", "item": "tea", "name": "Bob"})]
    stale = value_hash(J.serialize(order("c1")))
    late = ResponseSerde(J).serialize(Response(stale, {"name": "Ann"}))
    driver.pipe_bytes(RESPONSES, S.serialize("o1"), late)
    assert driver.read("out") == []
    assert driver.store("enriched").get("o1") == {"customer": "c2", "item": "tea", "name": "Bob"}
    # The same answer for o1's current value is taken.
    current = value_hash(J.serialize(order("c2")))
    fresh = ResponseSerde(J).serialize(Response(current, {"name": "Bobby"}))
    driver.pipe_bytes(RESPONSES, S.serialize("o1"), fresh)
    assert driver.read("out") == [("o1", {"customer": "c2", "item": "tea", "name": "Bobby"})]


def test_a_late_response_in_a_backlog_is_discarded() -> None:
    """A backlog on the broker: o1 moves from c1 to c2 before the right side's answers come
    back; only the answer for o1's current value makes a row."""
    driver = TopologyTestDriver(shop("left"))
    driver.pipe("customers", "c1", {"name": "Ann"})
    driver.pipe("customers", "c2", {"name": "Bob"})
    ann = Response(value_hash(J.serialize(order("c1"))), {"name": "Ann"})
    with driver.backlog():
        driver.pipe("orders", "o1", order("c1"))
        driver.pipe("orders", "o1", order("c2"))
        driver.pipe_bytes(RESPONSES, S.serialize("o1"), ResponseSerde(J).serialize(ann))
    assert driver.read("out") == [
        ("o1", {"customer": "c1", "item": "tea", "name": "Ann"}),
        ("o1", {"customer": "c2", "item": "tea", "name": "Bob"}),
    ]  # the held answer for c1 came after o1 moved: dropped


def test_a_result_whose_removal_was_dropped_as_stale_is_removed_by_the_next_update() -> None:
    """Inner join: the answer that was to remove o1's result was made for a value o1 no longer
    has when it comes back (the hash check drops it), and o1's next update would, as in Kafka
    Streams, send no subscription answered with "no right row": the result would stay for
    good. Found by three workers under SIGKILLs (tests/integration/test_fk_join_faults.py).
    Here an answer piped by hand stands for o1's result from before the late answer."""

    def stale_result(driver: TopologyTestDriver, value: dict[str, Any]) -> None:
        ann = Response(value_hash(J.serialize(value)), {"name": "Ann"})
        driver.pipe_bytes(RESPONSES, S.serialize("o1"), ResponseSerde(J).serialize(ann))
        assert driver.read("out") == [("o1", {**value, "name": "Ann"})]

    # c1 was deleted while o1 changed, foreign key unchanged: c1's tombstone answer was for
    # o1's old value; o1's new value must ask again and be answered "no c1".
    driver = TopologyTestDriver(shop("inner"))
    driver.pipe("orders", "o1", order("c1"))
    stale_result(driver, order("c1"))
    driver.pipe("orders", "o1", order("c1", "cake"))
    assert driver.read("out") == [("o1", None)]
    assert driver.store("enriched").get("o1") is None

    # o1's foreign key went to None, then o1 changed again (None still) before the tombstone
    # answer for the first change came back.
    driver = TopologyTestDriver(shop("inner"))
    driver.pipe("orders", "o1", order(None))
    stale_result(driver, order(None))
    driver.pipe("orders", "o1", order(None, "cake"))
    assert driver.read("out") == [("o1", None)]

    # The same, and then o1 is deleted.
    driver = TopologyTestDriver(shop("inner"))
    driver.pipe("orders", "o1", order(None))
    stale_result(driver, order(None))
    driver.pipe("orders", "o1", None)
    assert driver.read("out") == [("o1", None)]

    # Where c1 is there, the new value joins it.
    driver = TopologyTestDriver(shop("inner"))
    driver.pipe("customers", "c1", {"name": "Bob"})
    driver.pipe("orders", "o1", order("c1"))
    driver.read("out")
    stale_result(driver, order("c1"))
    driver.pipe("orders", "o1", order("c1", "cake"))
    assert driver.read("out") == [("o1", {"customer": "c1", "item": "cake", "name": "Bob"})]


def test_the_result_is_a_table(inner: TopologyTestDriver) -> None:
    t = Topology("shop")
    orders = t.table("orders", key_serde=S, value_serde=J)
    customers = t.table("customers", key_serde=S, value_serde=J)
    joined = orders.join(customers, enrich, foreign_key=lambda _k, o: o["customer"])
    # A table operator below it gets changes: a count per customer name moves with the join.
    joined.group_by(lambda _k, v: v["name"], key_serde=S).count(name="per_name").to_stream().to(
        "counts", key_serde=S
    )
    d = TopologyTestDriver(t)
    d.pipe("customers", "c1", {"name": "Ann"})
    d.pipe("orders", "o1", order("c1"))
    d.pipe("orders", "o2", order("c1"))
    d.pipe("customers", "c1", {"name": "Annie"})
    assert d.store("per_name").get("Ann") == 0
    assert d.store("per_name").get("Annie") == 2


def test_names_of_topics_and_stores() -> None:
    subs = shop().subtopologies("shop")
    topics = {t for s in subs for t in s.source_topics}
    assert {
        "shop-enriched-subscription-registration-topic",
        "shop-enriched-subscription-response-topic",
    } <= topics
    assert {s.name for sub in subs for s in sub.stores} == {
        "orders",
        "customers",
        "enriched",
        "enriched-subscription-store",
    }
    described = shop().describe()
    assert (
        "enriched-subscription-join (fk_subscription_join, stores: enriched-subscription-store)"
        in described
    )
    assert "Processor: enriched (fk_response_join, stores: enriched, orders)" in described


def test_the_internal_topics_take_the_partitions_of_the_side_that_reads_them() -> None:
    plan = plan_partitions(shop().subtopologies("shop"), {"orders": 4, "customers": 2, "out": 1})
    assert plan.repartition == {
        "shop-enriched-subscription-registration-topic": 2,  # the right table's
        "shop-enriched-subscription-response-topic": 4,  # the left table's
    }
    assert sorted(plan.tasks.values()) == [2, 4]


def test_the_left_table_may_be_derived() -> None:
    """The left table is a re-grouping (its own repartition topic): the response topic takes
    that topic's partition count, the subscription topic the right table's."""
    t = Topology("x")
    users = t.table("users", key_serde=S, value_serde=J)
    per_team = users.group_by(lambda _k, v: v["team"], key_serde=S).count(name="per_team")
    teams = t.table("teams", key_serde=S, value_serde=J)
    per_team.join(teams, lambda n, team: n, foreign_key=lambda k, _n: k, name="fk")
    plan = plan_partitions(t.subtopologies("x"), {"users": 3, "teams": 5})
    assert plan.repartition["x-fk-subscription-response-topic"] == 3
    assert plan.repartition["x-fk-subscription-registration-topic"] == 5


def test_wrong_arguments_are_refused() -> None:
    t = Topology("x")
    a = t.table("a", key_serde=S, value_serde=J)
    b = t.table("b", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match=r"foreign_key=\) must be a function"):
        a.join(b, enrich, foreign_key="customer")  # type: ignore[arg-type]
    with pytest.raises(TopologyError, match="how='outer'"):
        a.join(b, enrich, foreign_key=lambda _k, v: v, how="outer")
    other = Topology("y").table("c", key_serde=S, value_serde=J)
    with pytest.raises(TopologyError, match="same Topology"):
        a.join(other, enrich, foreign_key=lambda _k, v: v)


def test_wire_formats_round_trip() -> None:
    h = value_hash(b"v")
    serde = SubscriptionSerde(S)
    for sub in (
        Subscription("o1", h, Instruction.PROPAGATE_ONLY_IF_FK_VAL_AVAILABLE),
        Subscription("", None, Instruction.DELETE_KEY_AND_PROPAGATE),
    ):
        assert serde.deserialize(serde.serialize(sub)) == sub
    responses = ResponseSerde(J)
    for response in (Response(h, {"x": 1}), Response(None, None), Response(h, None)):
        assert responses.deserialize(responses.serialize(response)) == response
    with pytest.raises(WireFormatError, match="unknown response flags"):
        decode_response(b"\x01\x80")
    # Subscribers of one foreign key are one prefix, whatever the left keys are.
    assert subscription_key(b"c1", b"o9").startswith(subscribers_prefix(b"c1"))
    assert not subscription_key(b"c10", b"").startswith(subscribers_prefix(b"c1"))
