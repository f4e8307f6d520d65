"""ETL: CSV files of orders into PostgreSQL and daily Parquet files.

CSV files (header `order_id,customer,amount,currency,ordered_at`) dropped into `$ETL_INPUT` (a
glob, default `/data/incoming/*.csv`; a directory every worker sees) are read by one source task
into the topic `raw-orders` (keyed by order id; `$ETL_RAW_TOPIC`), then:

1. parsed and validated (`parse`): a row that is not an order (a missing field, an amount that
   is not a number, an unknown currency code) raises, and with `--processing-error-handler
   dead_letter` goes to the dead-letter topic with the file and line it came from
   (`processor.source.file`, `processor.source.line` headers); a line that is not CSV at all goes
   there from the source;
2. enriched with the euro amount, from the global table `currency-rates` (`$ETL_RATES_TOPIC`;
   key: ISO currency code, value like {"eur": 0.92}: euros per unit; every worker holds all);
3. upserted into the PostgreSQL table `orders` at `$ETL_DATABASE` (exactly once: the rows and
   the sink's offsets commit in one transaction) and written to Parquet files under
   `$ETL_OUTPUT` (default `/data/orders`), one directory per day, a file per task at least every
   minute (`$ETL_ROLL_MS`; exactly once: published by an atomic rename).

The table is created by the user (the sink checks it when it starts):

    CREATE TABLE orders (order_id text PRIMARY KEY, customer text NOT NULL,
        amount double precision NOT NULL, currency text NOT NULL, amount_eur double precision,
        ordered_at timestamptz NOT NULL);

    processor run topologies.etl_orders --processing-guarantee exactly_once \\
        --processing-error-handler dead_letter
"""

import os
from typing import Any

from processor import Topology, serdes
from processor.sinks import FileSink, PostgresSink
from processor.sources import FileSource

INPUT = os.environ.get("ETL_INPUT", "/data/incoming/*.csv")
DATABASE = os.environ.get("ETL_DATABASE", "postgresql://processor@localhost/shop")
OUTPUT = os.environ.get("ETL_OUTPUT", "/data/orders")
RAW_TOPIC = os.environ.get("ETL_RAW_TOPIC", "raw-orders")
RATES_TOPIC = os.environ.get("ETL_RATES_TOPIC", "currency-rates")
ROLL_MS = int(os.environ.get("ETL_ROLL_MS", "60000"))

FIELDS = ("order_id", "customer", "amount", "currency", "ordered_at")


def parse(row: dict[str, str]) -> dict[str, Any]:
    """An order from a CSV row; raises ValueError naming what is wrong."""
    missing = [field for field in FIELDS if not row.get(field)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    currency = row["currency"].strip().upper()
    if len(currency) != 3 or not currency.isalpha():
        raise ValueError(f"currency {row['currency']!r} is not an ISO code")
    return {
        "order_id": row["order_id"].strip(),
        "customer": row["customer"].strip(),
        "amount": float(row["amount"]),  # ValueError: "could not convert string to float"
        "currency": currency,
        "ordered_at": row["ordered_at"].strip(),
    }


def in_euros(order: dict[str, Any], rate: dict[str, Any] | None) -> dict[str, Any]:
    euros = None if rate is None else round(order["amount"] * rate["eur"], 2)
    return {**order, "amount_eur": euros}


topology = Topology("etl-orders")
rates = topology.global_table(
    RATES_TOPIC, key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde()
)
raw = topology.source(
    FileSource(INPUT, format="csv", key=lambda row: row.get("order_id")),
    topic=RAW_TOPIC,
    name="incoming-orders",
)
orders = raw.map_values(parse, name="parse").join(
    rates, in_euros, key=lambda order_id, order: order["currency"], how="left", name="in-euros"
)
orders.sink(PostgresSink(DATABASE, "orders", key_columns=["order_id"], mode="upsert"), name="db")
orders.sink(FileSink(OUTPUT, format="parquet", roll_ms=ROLL_MS, path_by="date"), name="files")
