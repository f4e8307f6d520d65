"""The topology the foreign-key join worker test runs: orders (`TEST_SOURCE_TOPIC`, values
"<customer id>:<item>") joined with the customer each names (`TEST_SECOND_SOURCE_TOPIC`,
values the customer's name), inner, to `TEST_SINK_TOPIC` as "<order>+<customer>"."""

from __future__ import annotations

import os

from processor import Topology, serdes

STR = serdes.StringSerde()
ORDERS = os.environ.get("TEST_SOURCE_TOPIC", "orders")
CUSTOMERS = os.environ.get("TEST_SECOND_SOURCE_TOPIC", "customers")
SINK = os.environ.get("TEST_SINK_TOPIC", "orders-with-customer")

orders_with_customer = Topology("orders-with-customer")
_orders = orders_with_customer.table(ORDERS, key_serde=STR, value_serde=STR, name="orders")
_customers = orders_with_customer.table(CUSTOMERS, key_serde=STR, value_serde=STR, name="customers")
_orders.join(
    _customers,
    lambda order, customer: f"{order}+{customer}",
    foreign_key=lambda _order_id, order: order.split(":")[0],
    name="with-customer",
).to_stream().to(SINK, key_serde=STR, value_serde=STR)
