"""The ETL example `topologies/etl_orders.py` through the in-memory driver, on a real PostgreSQL:
CSV rows become euro-valued rows of the `orders` table (upserted: a corrected row replaces the
first), and bad rows become dead letters naming their file and line."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import psycopg
import pytest

from processor.testing import TopologyTestDriver
from processor.topology.handling import ErrorHandler

TABLE = (
    "CREATE TABLE orders (order_id text PRIMARY KEY, customer text NOT NULL, amount double "
    "precision NOT NULL, currency text NOT NULL, amount_eur double precision, ordered_at "
    "timestamptz NOT NULL)"
)


def test_orders_are_parsed_converted_and_upserted_and_bad_rows_say_where_they_were(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(TABLE)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.csv").write_text(
        "order_id,customer,amount,currency,ordered_at\n"
        "o1,ada,10.00,usd,2026-12-03T10:00:00Z\n"
        "o2,bo,twelve,EUR,2026-12-03T10:01:00Z\n"
        "o3,cy,7.50,GBP,2026-12-03T10:02:00Z\n"
        "o1,ada,20.00,USD,2026-12-03T10:03:00Z\n"
    )
    monkeypatch.setenv("ETL_INPUT", str(incoming / "*.csv"))
    monkeypatch.setenv("ETL_DATABASE", pg_dsn)
    monkeypatch.setenv("ETL_OUTPUT", str(tmp_path / "orders"))
    from topologies import etl_orders

    etl_orders = importlib.reload(etl_orders)
    driver = TopologyTestDriver(
        etl_orders.topology,
        processing_error_handler=ErrorHandler.DEAD_LETTER,
        dead_letter_topic="dead",
    )
    driver.pipe("currency-rates", "USD", {"eur": 0.5})
    driver.pipe("currency-rates", "EUR", {"eur": 1.0})
    assert driver.poll_source("incoming-orders") == 4
    driver.close()

    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT order_id, amount, currency, amount_eur FROM orders ORDER BY order_id"
        ).fetchall()
    # o1 corrected by its second row; GBP has no rate: no euro amount (a left join).
    assert rows == [("o1", 20.0, "USD", 10.0), ("o3", 7.5, "GBP", None)]
    [dead] = driver.read_records("dead")
    headers = {k: v for k, v in dead.headers or []}
    assert headers["processor.source.file"] == str(incoming / "a.csv").encode()
    assert headers["processor.source.line"] == b"3"
    assert json.loads(dead.value or b"")["amount"] == "twelve"
