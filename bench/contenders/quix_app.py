"""The Quix Streams contender (run from the contenders' venv, not the project's).

`stateless`: `sdf.filter(...).apply(...)`; `count`: a stateful `apply` keeping the count in the
key's State (RocksDB with a changelog topic, Quix's default), the updated count written as text.
Input keys are already the keys to count by, so there is no `group_by`.
"""

from __future__ import annotations

import logging
from typing import Any

from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]

from bench.contenders import common_arguments, settings


def main() -> None:
    args = common_arguments(__doc__.splitlines()[0])
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.app_id,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        processing_guarantee="exactly-once"
        if args.guarantee == "exactly_once"
        else "at-least-once",
        loglevel=logging.WARNING,
        consumer_extra_config=settings(args.consumer_setting),
        producer_extra_config=settings(args.producer_setting),
    )
    source = app.topic(
        args.input, key_deserializer="str", value_deserializer="str", key_serializer="str"
    )
    sink = app.topic(args.output, key_serializer="str", value_serializer="str")
    sdf = app.dataframe(source)
    if args.workload == "stateless":
        sdf = sdf.filter(lambda value: int(value) % 4 != 0).apply(lambda value: str(int(value) * 2))
    else:

        def count(_value: Any, state: Any) -> str:
            total: int = state.get("count", 0) + 1
            state.set("count", total)
            return str(total)

        sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
