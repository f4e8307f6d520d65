"""Order enrichment: each order joined with its customer and with the customer's country.

Reads three topics (values are JSON):

- `orders` (key: order id; value like {"customer_id": "c1", "amount": 120}): a stream;
- `customers` (key: customer id; value like {"name": "Ada", "country": "FR"}): a table, the
  latest row per customer (a null value deletes it);
- `countries` (key: ISO country code; value like {"name": "France", "vat": 0.2}): a global
  table, read whole by every worker (it is small, and any order may need any country).

and writes `orders-enriched` (key: order id) with the order plus "customer" and "country" (None
where there is no such row: both joins are left joins, so no order is dropped).

The customers table is partitioned by customer id, the orders topic by order id: the orders are
re-keyed by customer id first, so the join inserts the repartition topic
`order-enrichment-with-customer-repartition` and each order meets its customer in one task.
Within that task the records of both topics are taken in timestamp order, so an order is
enriched with the customer row as it was at the order's time, also when the application catches
up on a backlog (`--max-task-idle-ms` says how long to wait for a topic with nothing fetched).
The country needs no co-partitioning: it is looked up by the code in the customer's row.

    processor run topologies.order_enrichment --bootstrap-servers 127.0.0.1:9092
"""

from typing import Any

from processor import Topology, serdes

STRING = serdes.StringSerde()
JSON = serdes.JsonSerde()

topology = Topology("order-enrichment")
customers = topology.table("customers", key_serde=STRING, value_serde=JSON)
countries = topology.global_table("countries", key_serde=STRING, value_serde=JSON)


def with_customer(order: dict[str, Any], customer: dict[str, Any] | None) -> dict[str, Any]:
    return {**order, "customer": customer}


def country_code(_customer_id: str, order: dict[str, Any]) -> str | None:
    customer = order["customer"]
    return None if customer is None else customer.get("country")


def with_country(order: dict[str, Any], country: dict[str, Any] | None) -> dict[str, Any]:
    return {**order, "country": country}


(
    topology.stream("orders", key_serde=STRING, value_serde=JSON)
    .map(lambda order_id, order: (order["customer_id"], {**order, "order_id": order_id}))
    .join(customers, with_customer, how="left", name="with-customer")
    .join(countries, with_country, key=country_code, how="left", name="with-country")
    .map(lambda _customer_id, order: (order["order_id"], order))
    .to("orders-enriched")
)
