"""The joins example `topologies/order_enrichment.py` through the in-memory driver: each order
gets the customer row and country of its time, left joins keep orders with neither."""

from __future__ import annotations

from processor.testing import TopologyTestDriver
from topologies import order_enrichment


def test_orders_are_enriched_with_their_customer_and_country_as_they_were_at_the_time() -> None:
    driver = TopologyTestDriver(order_enrichment.topology)
    driver.pipe("countries", "FR", {"name": "France", "vat": 0.2}, timestamp=1)
    driver.pipe("countries", "DE", {"name": "Germany", "vat": 0.19}, timestamp=1)
    driver.pipe("customers", "c1", {"name": "Ada", "country": "FR"}, timestamp=2)
    driver.pipe("orders", "o1", {"customer_id": "c1", "amount": 120}, timestamp=3)
    driver.pipe("orders", "o2", {"customer_id": "c2", "amount": 5}, timestamp=4)  # no customer
    driver.pipe("customers", "c1", {"name": "Ada", "country": "DE"}, timestamp=5)  # moved
    driver.pipe("orders", "o3", {"customer_id": "c1", "amount": 7}, timestamp=6)
    driver.pipe("customers", "c2", {"name": "Bo", "country": "IT"}, timestamp=7)  # no such country
    driver.pipe("orders", "o4", {"customer_id": "c2", "amount": 9}, timestamp=8)
    driver.pipe("customers", "c1", None, timestamp=9)  # deleted
    driver.pipe("orders", "o5", {"customer_id": "c1", "amount": 1}, timestamp=10)
    france = {"name": "France", "vat": 0.2}
    germany = {"name": "Germany", "vat": 0.19}
    assert driver.read("orders-enriched") == [
        (
            "o1",
            {
                "customer_id": "c1",
                "amount": 120,
                "order_id": "o1",
                "customer": {"name": "Ada", "country": "FR"},
                "country": france,
            },
        ),
        (
            "o2",
            {"customer_id": "c2", "amount": 5, "order_id": "o2", "customer": None, "country": None},
        ),
        (
            "o3",
            {
                "customer_id": "c1",
                "amount": 7,
                "order_id": "o3",
                "customer": {"name": "Ada", "country": "DE"},
                "country": germany,
            },
        ),
        (
            "o4",
            {
                "customer_id": "c2",
                "amount": 9,
                "order_id": "o4",
                "customer": {"name": "Bo", "country": "IT"},
                "country": None,
            },
        ),
        (
            "o5",
            {"customer_id": "c1", "amount": 1, "order_id": "o5", "customer": None, "country": None},
        ),
    ]
