"""The contenders of `python -m bench.compare`, one small program each.

Every contender reads the same input (key: UTF-8 text such as ``k123``; value: the record's
sequence number as decimal text) and does one of two workloads:

- ``stateless``: keep the records whose number is not divisible by 4, and write them with the
  number doubled (decimal text) under the same key;
- ``count``: count the records per key and write each updated count under the key;
- ``count-window``: count the records per key in tumbling event-time windows of WINDOW_SIZE_MS
  (grace WINDOW_GRACE_MS; the record's own timestamp, which the harness sets), and write each
  updated count (not only final ones) under the key ``<key>@<window start ms>``;
- ``process``: a running sum per key of the records' numbers, each new sum written under the key
  (8-byte big-endian, as a count);
- ``process-timers``: the same, and each record (re)sets its key's timer to TIMER_DELAY_MS after
  its timestamp, on stream time; a timer that fires (the key had no record for that long in its
  partition's stream time) writes the key's sum under the key ``<key>@<timer's time ms>``;
- ``join``: the input holds orders (key: a customer id such as ``c123``; value: a JSON object),
  `--table` a table of customers (the same keys, co-partitioned; JSON values); each order is
  left-joined with its customer's current value and written under its key as the JSON object
  ``{**order, "customer": customer}`` (``customer`` null when the table has no such key).

`raw_loop`, `quix_app` and `faust_app` take the same arguments (see `common_arguments`);
`ours_topology` is a topology for `processor run`; `kafka-streams/` is a Maven project.
"""

from __future__ import annotations

import argparse
from typing import Any

WINDOW_SIZE_MS = 60_000  # the count-window workload's tumbling windows (also in StreamsBench)
WINDOW_GRACE_MS = 0  # the input is in timestamp order within each partition: nothing is late
TIMER_DELAY_MS = 60_000  # process-timers: a key's timer fires this long after its last record
PROCESS_WORKLOADS = ["process", "process-timers"]
JOIN_WORKLOAD = "join"


def enrich(order: dict[str, Any], customer: Any) -> dict[str, Any]:
    """The join workload's joiner, the same in every Python contender."""
    return {**order, "customer": customer}


def common_arguments(description: str) -> argparse.Namespace:
    """The arguments every Python contender takes, so the harness starts them alike."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--app-id", required=True, help="consumer group / application id")
    parser.add_argument(
        "--workload",
        choices=["stateless", "count", "count-window", *PROCESS_WORKLOADS, JOIN_WORKLOAD],
        required=True,
    )
    parser.add_argument(
        "--guarantee", choices=["at_least_once", "exactly_once"], default="at_least_once"
    )
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--table", default="", help="the join workload's table topic")
    parser.add_argument("--worker-index", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--commit-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--standbys", type=int, default=0, help="standby replicas, if any")
    # librdkafka settings for the contender's consumer and producer (used by quix_app, for the
    # failover workload's session and transaction timeouts).
    parser.add_argument("--consumer-setting", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--producer-setting", action="append", default=[], metavar="KEY=VALUE")
    return parser.parse_args()


def settings(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict (librdkafka takes every value as text)."""
    parsed = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise SystemExit(f"not KEY=VALUE: {pair}")
        parsed[key] = value
    return parsed
