"""The demo: a local broker, the `topologies.wordcount` example on two workers, sample sentences
flowing in and word counts flowing out. Run it through `scripts/demo`, which sets everything up."""

from __future__ import annotations

import argparse
import itertools
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from processor.testing.broker import LocalBroker

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a stream processor for Python",
    "state lives in RocksDB and is backed by changelog topics",
    "workers with the same application id share the work",
    "adding a worker scales out and losing one fails over",
]


def feed(bootstrap: str, stop: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for n in itertools.count():
        if stop.wait(0.25):
            break
        sentence = SENTENCES[n % len(SENTENCES)]
        producer.produce("sentences", key=str(n).encode(), value=sentence.encode())
        producer.poll(0)
    producer.flush(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=30, help="how long to run (0: until Ctrl-C)"
    )
    args = parser.parse_args()

    with LocalBroker() as broker, tempfile.TemporaryDirectory(prefix="processor-demo-") as tmp:
        bootstrap = broker.bootstrap_servers
        print(f"broker running at {bootstrap}", flush=True)
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
        for future in admin.create_topics(
            [NewTopic("sentences", 6, 1), NewTopic("word-counts", 6, 1)]
        ).values():
            future.result()
        del admin  # closes its connections before the broker goes away at the end
        print("topics 'sentences' and 'word-counts' created with 6 partitions", flush=True)

        log_path = Path(tmp) / "workers.log"
        with open(log_path, "wb") as log:
            workers = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "processor.cli",
                    "run",
                    "topologies.wordcount",
                    "--workers",
                    "2",
                    "--num-standby-replicas",
                    "1",
                    "--http-port",
                    "0",
                    "--bootstrap-servers",
                    bootstrap,
                    "--state-dir",
                    f"{tmp}/state",
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        print(
            "started 2 workers: processor run topologies.wordcount --workers 2 "
            f"--num-standby-replicas 1 --http-port 0 (log: {log_path})"
        )
        stop = threading.Event()
        feeder = threading.Thread(target=feed, args=(bootstrap, stop), daemon=True)
        feeder.start()

        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "demo-reader",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe(["word-counts"])
        counts: dict[str, int] = {}
        deadline = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
        try:
            while time.monotonic() < deadline:
                if workers.poll() is not None:
                    print(log_path.read_text(), file=sys.stderr)
                    print(f"workers exited with {workers.returncode}", file=sys.stderr)
                    return 1
                for message in consumer.consume(500, 0.5):
                    if message.error():
                        continue
                    word = message.key().decode()
                    counts[word] = struct.unpack(">q", message.value())[0]
                    print(f"word-counts[{message.partition()}]  {word:<12} {counts[word]}")
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            feeder.join(10)
            consumer.close()
            workers.terminate()
            workers.wait(60)
        for line in log_path.read_text().splitlines():
            if "active tasks" in line:
                print(line.split("] ", 1)[-1])
        print(
            f"demo done: {sum(counts.values())} words counted, {len(counts)} distinct; "
            f"workers exited with {workers.returncode}"
        )
        return 0 if workers.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
