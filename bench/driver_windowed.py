"""The windowed count's per-record path, without Kafka: records/s through the in-memory driver,
which runs the worker's operator and store code (in-memory stores). For side-by-side runs of two
checkouts of the code on one machine:

    python -m bench.driver_windowed [--code PATH] [--records N]

`--code` imports `processor` from another checkout (a `git worktree` of the commit before).
"""

from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--code", help="a checkout to import processor from")
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, args.code)
    from processor import Topology, serdes
    from processor.testing import TopologyTestDriver
    from processor.windows import TumblingWindows

    text = serdes.StringSerde()
    t = Topology("windowed")
    (
        t.stream("in", key_serde=text, value_serde=text)
        .group_by_key()
        .windowed_by(TumblingWindows(size_ms=60_000))
        .count(name="counts")
        .to_stream()
        .map(lambda window, n: (window.key, n))
        .to("out", key_serde=text, value_serde=serdes.IntSerde())
    )
    driver = TopologyTestDriver(t)
    keys = [f"k{i}".encode() for i in range(1000)]
    start = time.perf_counter()
    for i in range(args.records):
        driver.pipe_bytes("in", keys[i % 1000], b"x", timestamp=i * 10)
        if i % 5000 == 0:
            driver.read_records("out")  # the driver keeps every output until read
    print(f"{args.records / (time.perf_counter() - start):,.0f} records/s")


if __name__ == "__main__":
    main()
