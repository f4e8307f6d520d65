"""Running sum with a threshold: add up the amounts per key; when a key's sum reaches the
threshold, emit the sum and start again from zero.

Reads `amounts` (key: string, value: integer) and writes the sums that reached the threshold to
`sums-reached`. The low-level `process` operator keeps the running sums in the `sums` store.

    processor run topologies.running_sum --bootstrap-servers 127.0.0.1:9092
"""

from processor import ProcessorContext, Topology, serdes

THRESHOLD = 100

topology = Topology("running-sum")
topology.add_store("sums", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())


def add_up(context: ProcessorContext, key: str, amount: int) -> None:
    sums = context.store("sums")
    total = sums.get(key, 0) + amount
    if total >= THRESHOLD:
        context.forward(key, total)
        sums.delete(key)
    else:
        sums.put(key, total)


(
    topology.stream("amounts", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
    .process(add_up, stores=["sums"])
    .to("sums-reached")
)
