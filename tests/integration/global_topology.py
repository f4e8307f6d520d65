"""The topology the global table integration tests run in worker processes: orders enriched
with the country their value names, from a global table. Topic names come from the
environment."""

import os

from processor import Topology, serdes

ORDERS = os.environ.get("TEST_SOURCE_TOPIC", "test-orders")
COUNTRIES = os.environ.get("TEST_GLOBAL_TOPIC", "test-countries")
SINK = os.environ.get("TEST_SINK_TOPIC", "test-enriched")
INSTANCE = os.environ.get("PROCESSOR_INSTANCE_ID", "unnamed")

# Each output: (order key, {"order": ..., "country": the row or None, "instance": who joined}).
enriching = Topology("enriching")
_countries = enriching.global_table(
    COUNTRIES, key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde()
)
enriching.stream(ORDERS, key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde()).join(
    _countries,
    lambda order, country: {"order": order["id"], "country": country, "instance": INSTANCE},
    key=lambda key, order: order["country"],
    how="left",
).to(SINK)
