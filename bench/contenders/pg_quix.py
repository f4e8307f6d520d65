"""Quix Streams' contender of `bench/postgres_e2e.py` (run from the contenders' venv, which needs
`psycopg2-binary` besides quixstreams): an application reading the JSON records of `--input`
and writing them with its `PostgreSQLSink` into `--table`.

The sink is configured for its fastest path on a table that already exists: no schema update
(`schema_auto_update=False`: otherwise every batch runs `ALTER TABLE ... ADD COLUMN IF NOT
EXISTS` per column) and no metadata columns (`include_metadata=False`: the table has the same
five columns as the other contenders'). Everything else is Quix's default: at-least-once, a
checkpoint every 5 s, each checkpoint's records written by the sink in one transaction with
`psycopg2.extras.execute_values` (100 rows per INSERT).
"""

from __future__ import annotations

import argparse
import logging

from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]
from quixstreams.sinks.community.postgresql import (  # type: ignore[import-not-found, unused-ignore]
    PostgreSQLSink,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--table", required=True)
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        loglevel=logging.WARNING,
    )
    sdf = app.dataframe(app.topic(args.input, key_deserializer="str", value_deserializer="json"))
    sdf.sink(
        PostgreSQLSink(
            host=args.host,
            port=args.port,
            dbname=args.dbname,
            user=args.user,
            password="",
            table_name=args.table,
            schema_auto_update=False,
            include_metadata=False,
        )
    )
    app.run()


if __name__ == "__main__":
    main()
