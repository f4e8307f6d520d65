"""The ceiling for one Python process: confluent-kafka's batch consume, the work in a plain loop,
produce, and a commit every `--commit-interval` seconds.

At-least-once: flush the producer, then commit the consumed offsets. Exactly-once: one
transaction per commit interval, the input offsets sent with it (`send_offsets_to_transaction`).
Counts live in a dict: no store, no changelog, nothing to restore, so they would be lost on a
restart. The partitions are split among `--workers` processes by index (`assign`, no group
rebalancing), since a partition moved by a rebalance would lose its counts.

The process workloads keep their running sums in a dict too; `process-timers` keeps each
partition's timers in memory (the latest per key in a dict, a heap by time with stale entries
skipped) and its stream time (the largest timestamp read), firing after each record whatever
it made due, by time then key: nothing is persisted, so a restart loses every timer.

The join workload reads the table topic's partitions of the same numbers as its input partitions
into a dict (key -> parsed JSON value), and writes each order (parsed, then dumped) with
`"customer"` set from the dict. The table's offsets are not committed: on a clean stop the dict
and the table's next offsets are pickled into the state directory, and a start reads them back
(else the table is read from its beginning), a local checkpoint as the stores of the other
contenders have.
"""

from __future__ import annotations

import heapq
import json
import pickle
import signal
import struct
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from bench.contenders import JOIN_WORKLOAD, TIMER_DELAY_MS, common_arguments

BATCH = 1000


def main() -> None:
    args = common_arguments(__doc__.splitlines()[0])
    exactly_once = args.guarantee == "exactly_once"
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.app_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer_config: dict[str, Any] = {"bootstrap.servers": args.bootstrap, "linger.ms": 5}
    if exactly_once:
        producer_config["transactional.id"] = f"{args.app_id}-{args.worker_index}"
    producer = Producer(producer_config)

    partitions = len(consumer.list_topics(args.input, timeout=30).topics[args.input].partitions)
    mine = [
        TopicPartition(args.input, p)
        for p in range(partitions)
        if p % args.workers == args.worker_index
    ]
    committed = consumer.committed(mine, timeout=30)
    joining = args.workload == JOIN_WORKLOAD
    checkpoint = Path(args.state_dir) / "table.pickle"
    table: dict[bytes, Any] = {}
    if joining:
        table_offsets = {p.partition: 0 for p in mine}  # from the beginning
        if checkpoint.exists():
            table, table_offsets = pickle.loads(checkpoint.read_bytes())
        committed += [TopicPartition(args.table, p, o) for p, o in table_offsets.items()]
    consumer.assign(committed)  # OFFSET_INVALID (none committed) starts from auto.offset.reset

    stop = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    if exactly_once:
        producer.init_transactions(30)
        producer.begin_transaction()
    output = args.output
    produce = producer.produce
    counts: dict[bytes, int] = {}
    pack = struct.Struct(">q").pack
    stateless = args.workload == "stateless"
    summing = args.workload in ("process", "process-timers")
    timed = args.workload == "process-timers"
    # process-timers, per partition: stream time, the timer per key, a heap of (at, key)
    stream_time: dict[int, int] = {}
    timers: dict[int, dict[bytes, int]] = {}
    heaps: dict[int, list[tuple[int, bytes]]] = {}
    consumed = False
    next_commit = time.monotonic() + args.commit_interval
    loads, dumps = json.loads, json.dumps
    table_topic = args.table
    while True:
        messages = consumer.consume(BATCH, 0.1)
        for message in messages:
            if message.error():
                raise KafkaException(message.error())
            key = message.key()
            partition = message.partition()
            if joining:
                if message.topic() == table_topic:
                    row = message.value()
                    if row is None:
                        table.pop(key, None)
                    else:
                        table[key] = loads(row)
                    continue
                order = loads(message.value())
                order["customer"] = table.get(key)
                value = dumps(order).encode()
            elif stateless:
                number = int(message.value())
                if number % 4:
                    value = b"%d" % (number * 2)
                else:
                    continue
            elif summing:
                count = counts.get(key, 0) + int(message.value())
                counts[key] = count
                value = pack(count)
            else:
                count = counts.get(key, 0) + 1
                counts[key] = count
                value = pack(count)
            while True:
                try:
                    produce(output, value, key, partition)
                    break
                except BufferError:
                    producer.poll(0.01)
            if timed:
                timestamp = message.timestamp()[1]
                now = stream_time.get(partition, -1)
                if timestamp > now:
                    stream_time[partition] = now = timestamp
                pending = timers.setdefault(partition, {})
                heap = heaps.setdefault(partition, [])
                at = timestamp + TIMER_DELAY_MS
                pending[key] = at
                heapq.heappush(heap, (at, key))
                while heap and heap[0][0] <= now:
                    at, fired = heapq.heappop(heap)
                    if pending.get(fired) == at:
                        del pending[fired]
                        firing = b"%s@%d" % (fired, at)
                        send(producer, output, pack(counts[fired]), firing, partition)
        consumed = consumed or bool(messages)
        producer.poll(0)
        if stop or time.monotonic() >= next_commit:
            if consumed:
                commit(consumer, producer, exactly_once)
                consumed = False
            next_commit = time.monotonic() + args.commit_interval
            if stop:
                break
    if exactly_once:
        producer.abort_transaction(10)
    if joining:  # the table's checkpoint: what was read of it, and where to go on from
        positions = consumer.position([TopicPartition(table_topic, p.partition) for p in mine])
        next_offsets = {  # none consumed this time: where it started
            tp.partition: tp.offset if tp.offset >= 0 else table_offsets[tp.partition]
            for tp in positions
        }
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_bytes(pickle.dumps((table, next_offsets)))
    consumer.close()


def send(producer: Producer, topic: str, value: bytes, key: bytes, partition: int) -> None:
    while True:
        try:
            producer.produce(topic, value, key, partition)
            return
        except BufferError:
            producer.poll(0.01)


def commit(consumer: Consumer, producer: Producer, exactly_once: bool) -> None:
    if exactly_once:
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        producer.begin_transaction()
        return
    if producer.flush(30):
        raise RuntimeError("producer did not flush")
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as error:
        if error.args[0].code() != KafkaError._NO_OFFSET:
            raise


if __name__ == "__main__":
    main()
