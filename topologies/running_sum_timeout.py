"""Running sum with a threshold and an inactivity timeout: add up the amounts per key; emit the sum
when it reaches the threshold, or, when the key has had no amount for `IDLE_MS`, emit the
partial sum it has; either way start again from zero.

`topologies/running_sum.py` extended with the timeout an actor would schedule for itself: each
amount moves the key's stream-clock timer to `IDLE_MS` after the key's newest amount, a sum
that reaches the threshold cancels it, and a timer that fires flushes what is there. The timer
is kept in the store `add-up-timers`, so a flush that is due is not lost in a failover.

Reads `amounts` (key: string, value: integer) and writes to `sums-flushed` (key: the same,
value: JSON {"sum": ..., "amounts": how many, "flushed": "threshold" or "idle"}). The partial
sums are in the `partial-sums` store, as {"sum", "amounts", "newest": the newest amount's time}.

    processor run topologies.running_sum_timeout --bootstrap-servers 127.0.0.1:9092 \\
        --idle-advance-ms 60000   # flush the partial sums of a quiet partition too
"""

from typing import Any

from processor import ProcessorContext, Topology, serdes

THRESHOLD = 100
IDLE_MS = 30_000

topology = Topology("running-sum-timeout")
topology.add_store("partial-sums", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())


def add_up(ctx: ProcessorContext, key: str, amount: int) -> None:
    sums = ctx.store("partial-sums")
    partial = sums.get(key) or {"sum": 0, "amounts": 0, "newest": ctx.timestamp}
    total = partial["sum"] + amount
    count = partial["amounts"] + 1
    if total >= THRESHOLD:
        sums.delete(key)
        ctx.cancel_timer()
        ctx.forward(key, {"sum": total, "amounts": count, "flushed": "threshold"})
        return
    newest = max(partial["newest"], ctx.timestamp)
    sums.put(key, {"sum": total, "amounts": count, "newest": newest})
    ctx.set_timer(newest + IDLE_MS)  # replaces the key's timer: IDLE_MS after its newest amount


def flush(ctx: ProcessorContext, key: str, _at_ms: int, _name: str) -> None:
    sums = ctx.store("partial-sums")
    partial: Any = sums.get(key)
    if partial is not None:
        sums.delete(key)
        ctx.forward(key, {"sum": partial["sum"], "amounts": partial["amounts"], "flushed": "idle"})


(
    topology.stream("amounts", key_serde=serdes.StringSerde(), value_serde=serdes.IntSerde())
    .process(add_up, name="add-up", stores=["partial-sums"], on_timer=flush)
    .to("sums-flushed", value_serde=serdes.JsonSerde())
)
