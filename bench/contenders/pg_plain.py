"""The ceiling of `bench/postgres_e2e.py`: a plain loop, one process, confluent-kafka consuming
the JSON records of `--input` and psycopg 3 COPYing them into `--table` in batches of
`--batch` rows, one database transaction per batch, the Kafka offsets committed (asynchronously)
after each. Nothing else: no internal topic, no checks beyond `json.loads`, no fencing, no
backpressure, at-least-once.
"""

from __future__ import annotations

import argparse
import json
import signal
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException

COLUMNS = ("id", "name", "amount", "qty", "at")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    running = True

    def stop(*_: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([args.input])
    copy_sql = f"COPY {args.table} ({', '.join(COLUMNS)}) FROM STDIN"
    rows: list[tuple[Any, ...]] = []
    with psycopg.connect(args.dsn) as conn:
        while running:
            messages = consumer.consume(num_messages=args.batch - len(rows), timeout=0.5)
            for message in messages:
                if message.error():
                    raise KafkaException(message.error())
                value = json.loads(message.value() or b"null")
                rows.append(
                    (value["id"], value["name"], value["amount"], value["qty"], value["at"])
                )
            if len(rows) >= args.batch or (rows and not messages):
                with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
                consumer.commit(asynchronous=True)
                rows.clear()
    consumer.close()


if __name__ == "__main__":
    main()
