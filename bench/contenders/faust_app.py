"""The Faust (faust-streaming) contender (run from the contenders' venv, not the project's).

`stateless`: an agent that filters, maps and sends; `count`: an agent that counts in a Table
(RocksDB through rocksdict, with its changelog topic) and sends each updated count as text.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import faust  # type: ignore[import-not-found, unused-ignore]

from bench.contenders import common_arguments


def main() -> None:
    args = common_arguments(__doc__.splitlines()[0])
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        datadir=args.state_dir,
        processing_guarantee=args.guarantee,
        broker_commit_interval=args.commit_interval,
        consumer_auto_offset_reset="earliest",
        topic_partitions=6,
        topic_replication_factor=1,
        table_standby_replicas=args.standbys,
        web_enabled=False,
    )
    source = app.topic(args.input, key_serializer="raw", value_serializer="raw")
    sink = app.topic(args.output, key_serializer="raw", value_serializer="raw")

    if args.workload == "stateless":

        @app.agent(source)
        async def stateless(stream: Any) -> None:
            async for key, value in stream.items():
                number = int(value)
                if number % 4:
                    await sink.send(key=key, value=b"%d" % (number * 2))

    else:
        # Key and value types declared: without them recovery could not read the changelog back
        # ("Error in recovery unexpected character, expected a JSON value").
        counts = app.Table("counts", default=int, partitions=6, key_type=bytes, value_type=int)

        @app.agent(source)
        async def count(stream: Any) -> None:
            async for key, _value in stream.items():
                total = counts[key] + 1
                counts[key] = total
                await sink.send(key=key, value=b"%d" % total)

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
