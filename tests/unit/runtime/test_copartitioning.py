"""Co-partitioning: the topics of one sub-topology (a join's stream and table, a merge) must have
one partition count, a repartition topic read with a table takes the table's count, and a
mismatch is one error naming the topics, their counts and what to do."""

from __future__ import annotations

import pytest

from processor import Topology, serdes
from processor.errors import CoPartitioningError
from processor.runtime.internal_topics import plan_partitions

STR = serdes.StringSerde()


def enrich(*, rekey: bool) -> Topology:
    topology = Topology("shop")
    orders = topology.stream("orders", key_serde=STR, value_serde=STR)
    customers = topology.table("customers", key_serde=STR, value_serde=STR)
    if rekey:
        orders = orders.map(lambda key, value: (value, value))
    orders.join(customers, lambda o, c: o, name="enrich").to("out")
    return topology


def test_a_join_of_topics_with_one_partition_count_has_that_many_tasks() -> None:
    plan = plan_partitions(enrich(rekey=False).subtopologies(), {"orders": 4, "customers": 4})
    assert plan.tasks == {0: 4}


def test_a_join_of_topics_with_different_counts_is_refused_naming_both_and_the_fix() -> None:
    with pytest.raises(CoPartitioningError) as raised:
        plan_partitions(enrich(rekey=False).subtopologies(), {"orders": 4, "customers": 2})
    message = str(raised.value)
    assert "customers=2, orders=4" in message
    assert "same partition count" in message
    assert "\n" not in message


def test_a_rekeyed_stream_is_repartitioned_to_the_tables_partition_count() -> None:
    plan = plan_partitions(enrich(rekey=True).subtopologies(), {"orders": 4, "customers": 2})
    assert plan.tasks == {0: 4, 1: 2}
    assert plan.repartition == {"shop-enrich-repartition": 2}


def test_a_merge_of_topics_with_different_counts_is_refused() -> None:
    topology = Topology("merged")
    topology.stream("a").merge(topology.stream("b")).to("out")
    with pytest.raises(CoPartitioningError, match="a=3, b=1"):
        plan_partitions(topology.subtopologies(), {"a": 3, "b": 1})
