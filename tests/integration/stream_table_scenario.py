"""The topology the stream-table join integration tests run in worker processes: orders (the
stream, `TEST_SOURCE_TOPIC`) enriched with customers (the table, `TEST_SECOND_SOURCE_TOPIC`),
left join, to `TEST_SINK_TOPIC` as "<order>+<customer or None>"."""

from __future__ import annotations

import os

from processor import Topology, serdes

STR = serdes.StringSerde()
ORDERS = os.environ.get("TEST_SOURCE_TOPIC", "orders")
CUSTOMERS = os.environ.get("TEST_SECOND_SOURCE_TOPIC", "customers")
SINK = os.environ.get("TEST_SINK_TOPIC", "enriched")

enrich = Topology("enrich")
_customers = enrich.table(CUSTOMERS, key_serde=STR, value_serde=STR, name="customers")
(
    enrich.stream(ORDERS, key_serde=STR, value_serde=STR)
    .join(_customers, lambda order, customer: f"{order}+{customer}", how="left", name="enrich")
    .to(SINK)
)
