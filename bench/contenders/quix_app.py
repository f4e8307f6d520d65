"""The Quix Streams contender (run from the contenders' venv, not the project's).

`stateless`: `sdf.filter(...).apply(...)`; `count`: a stateful `apply` keeping the count in the
key's State (RocksDB with a changelog topic, Quix's default), the updated count written as text;
`count-window`: `sdf.tumbling_window(...).count().current()` (its windowed RocksDB state with a
changelog; `.current()` emits every update, as ours' emit="update" and Kafka Streams' default),
each result written as text under the key `<key>@<window start>`. Input keys are already the
keys to count by, so there is no `group_by`.

`join`: its closest feature to a stream-table join, `join_asof(customers, how="left",
on_merge=enrich)`: the customers topic's dataframe writes each record into a timestamped store
(RocksDB with a changelog, versions kept per key for `grace_ms`, 7 days by default) and each
order reads its key's latest version at or before the order's timestamp.
"""

from __future__ import annotations

import logging
from typing import Any

from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]
from quixstreams.models.serializers import (  # type: ignore[import-not-found, unused-ignore]
    Serializer,
)

from bench.contenders import (
    JOIN_WORKLOAD,
    WINDOW_GRACE_MS,
    WINDOW_SIZE_MS,
    common_arguments,
    enrich,
    settings,
)


class _SecondOfPair(Serializer):  # type: ignore[misc, unused-ignore]
    """A value serializer writing the second item of a (key, text) pair as UTF-8: the window
    results are turned into such pairs so that `to_topic(key=...)` can take the key from them
    (its key callable sees only the value)."""

    def __call__(self, value: tuple[str, str], ctx: Any) -> bytes:
        return value[1].encode()


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
    if args.workload == JOIN_WORKLOAD:
        orders = app.dataframe(
            app.topic(args.input, key_deserializer="str", value_deserializer="json")
        )
        customers = app.dataframe(
            app.topic(args.table, key_deserializer="str", value_deserializer="json")
        )
        sink = app.topic(args.output, key_serializer="str", value_serializer="json")
        orders.join_asof(customers, how="left", on_merge=enrich, name="customers").to_topic(sink)
        app.run()
        return
    source = app.topic(
        args.input, key_deserializer="str", value_deserializer="str", key_serializer="str"
    )
    sdf = app.dataframe(source)
    if args.workload == "count-window":
        sink = app.topic(args.output, key_serializer="str", value_serializer=_SecondOfPair())
        sdf = (
            sdf.tumbling_window(duration_ms=WINDOW_SIZE_MS, grace_ms=WINDOW_GRACE_MS)
            .count()
            .current()
        )
        sdf = sdf.apply(
            lambda result, key, _timestamp, _headers: (
                f"{key}@{result['start']}",
                str(result["value"]),
            ),
            metadata=True,
        )
        sdf.to_topic(sink, key=lambda pair: pair[0])
    else:
        sink = app.topic(args.output, key_serializer="str", value_serializer="str")
        if args.workload == "stateless":
            sdf = sdf.filter(lambda value: int(value) % 4 != 0).apply(
                lambda value: str(int(value) * 2)
            )
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
