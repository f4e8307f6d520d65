"""Orders joined by foreign key with their customers, for the SIGKILL test
(`test_fk_join_faults.py`): the topology the workers run, seeded input for both tables, and the
reference computed from that input alone.

Orders (`TEST_SOURCE_TOPIC`, `PARTITIONS` partitions) are keyed by order id with JSON values
`{"customer": <customer id or null>, "rev": n}`; customers (`TEST_SECOND_SOURCE_TOPIC`,
`CUSTOMER_PARTITIONS` partitions) by customer id with `{"name": "<id>@<n>"}`. `n` is the
record's position in the generated input, so no value repeats and each names the update that
made it. Both are joined twice with the same joiner (the order with its customer's name, None
without one): inner to `TEST_SINK_TOPIC`, left to `TEST_SECOND_SINK_TOPIC`.

Records are produced to the partition Kafka's default partitioner picks for their key (the
join's response topic is partitioned by it too), so every key's updates are in one partition, in
generation order, and the final tables are the last value per key in generation order.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Any

from processor import Topology, serdes
from processor.query.partitioner import partition_for
from processor.topology.foreign_wire import subscription_key, value_hash
from tests.integration.workers import PARTITIONS

CUSTOMER_PARTITIONS = 3
INNER, LEFT = "orders-with-name", "orders-maybe-with-name"  # the joins' names

STR, JSON = serdes.StringSerde(), serdes.JsonSerde()

Row = dict[str, Any]


def joined(order: Row, customer: Row | None) -> Row:
    return {**order, "name": None if customer is None else customer["name"]}


def customer_of(_order_id: str, order: Row) -> str | None:
    customer: str | None = order["customer"]
    return customer


# -- the topology ----------------------------------------------------------------------------

orders_with_customer = Topology("fk-faults")
_orders = orders_with_customer.table(
    os.environ.get("TEST_SOURCE_TOPIC", "orders"), key_serde=STR, value_serde=JSON, name="orders"
)
_customers = orders_with_customer.table(
    os.environ.get("TEST_SECOND_SOURCE_TOPIC", "customers"),
    key_serde=STR,
    value_serde=JSON,
    name="customers",
)
_orders.join(_customers, joined, foreign_key=customer_of, how="inner", name=INNER).to_stream().to(
    os.environ.get("TEST_SINK_TOPIC", "inner"), key_serde=STR, value_serde=JSON
)
_orders.join(_customers, joined, foreign_key=customer_of, how="left", name=LEFT).to_stream().to(
    os.environ.get("TEST_SECOND_SINK_TOPIC", "left"), key_serde=STR, value_serde=JSON
)


# -- the input -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Update:
    """One record of either table: `topic` is "orders" or "customers"; `row` None deletes."""

    topic: str
    key: str
    row: Row | None

    @property
    def partition(self) -> int:
        count = PARTITIONS if self.topic == "orders" else CUSTOMER_PARTITIONS
        return partition_for(self.key.encode(), count)

    def value(self) -> bytes:
        """The row's JSON (a delete's record has no value: see `payload`)."""
        return json.dumps(self.row).encode()

    @property
    def payload(self) -> bytes | None:
        return None if self.row is None else self.value()


def generate(seed: int, updates: int, *, orders: int = 240, customers: int = 30) -> list[Update]:
    """Every customer but a few created, every order created (a few naming no customer, a few a
    customer that never exists), then `updates` random updates: orders moving to another
    customer (or none), orders changing with the same customer, orders deleted and created
    again, customers renamed, deleted and created again."""
    rng = random.Random(seed)
    existing = [f"c{i:02}" for i in range(customers)]
    never = [f"x{i}" for i in range(3)]  # customers no record creates
    order_ids = [f"o{i:03}" for i in range(orders)]
    out: list[Update] = []

    def customer_field() -> str | None:
        roll = rng.random()
        return None if roll < 0.04 else rng.choice(never) if roll < 0.08 else rng.choice(existing)

    rows: dict[str, Row | None] = {}  # each order's last row

    def order(order_id: str, customer: str | None) -> None:
        rows[order_id] = {"customer": customer, "rev": len(out)}
        out.append(Update("orders", order_id, rows[order_id]))

    def customer(customer_id: str) -> None:
        out.append(Update("customers", customer_id, {"name": f"{customer_id}@{len(out)}"}))

    for customer_id in existing[3:]:  # c00-c02 come later
        customer(customer_id)
    for order_id in order_ids:
        order(order_id, customer_field())
    for _ in range(updates):
        roll = rng.random()
        if roll < 0.30:  # an order moves
            order(rng.choice(order_ids), customer_field())
        elif roll < 0.45:  # an order changes, same customer (or created again)
            order_id = rng.choice(order_ids)
            last = rows.get(order_id)
            order(order_id, customer_field() if last is None else last["customer"])
        elif roll < 0.52:  # an order is deleted (even one already gone)
            out.append(Update("orders", order_id := rng.choice(order_ids), None))
            rows[order_id] = None
        elif roll < 0.92:  # a customer is renamed (or created again)
            customer(rng.choice(existing))
        else:  # a customer is deleted
            out.append(Update("customers", rng.choice(existing), None))
    return out


def lanes(updates: list[Update]) -> list[list[Update]]:
    """The updates per input partition: the orders' partitions, then the customers'."""
    out: list[list[Update]] = [[] for _ in range(PARTITIONS + CUSTOMER_PARTITIONS)]
    for update in updates:
        offset = 0 if update.topic == "orders" else PARTITIONS
        out[offset + update.partition].append(update)
    return out


# -- the reference ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """What the input must end in: each join's view (order id -> result row) and each join's
    subscription store (stored key -> hash of the order's value)."""

    orders: dict[str, Row]
    customers: dict[str, Row]
    inner: dict[str, Row]
    left: dict[str, Row]
    subscriptions: dict[bytes, bytes]


def final_tables(updates: list[Update]) -> tuple[dict[str, Row], dict[str, Row]]:
    tables: dict[str, dict[str, Row]] = {"orders": {}, "customers": {}}
    for update in updates:
        if update.row is None:
            tables[update.topic].pop(update.key, None)
        else:
            tables[update.topic][update.key] = update.row
    return tables["orders"], tables["customers"]


def reference(updates: list[Update]) -> Reference:
    orders, customers = final_tables(updates)
    left = {o: joined(row, customers.get(row["customer"])) for o, row in orders.items()}
    inner = {o: row for o, row in left.items() if row["name"] is not None}
    subscriptions: dict[bytes, bytes] = {}
    for o, row in orders.items():
        if row["customer"] is not None:
            hash_ = value_hash(JSON.serialize(row))
            assert hash_ is not None
            subscriptions[subscription_key(row["customer"].encode(), o.encode())] = hash_
    return Reference(orders, customers, inner, left, subscriptions)


def rev_of(name: str) -> int:
    """The input position of the customer update that named a customer `name`."""
    return int(name.rsplit("@", 1)[1])
