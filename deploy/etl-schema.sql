-- The table the ETL example (topologies/etl_orders.py) upserts into; run by the postgres
-- service of docker-compose.yml when its volume is new.
CREATE TABLE IF NOT EXISTS orders (
    order_id text PRIMARY KEY,
    customer text NOT NULL,
    amount double precision NOT NULL,
    currency text NOT NULL,
    amount_eur double precision,
    ordered_at timestamptz NOT NULL
);
