"""Device alerts: a device that stops reporting raises an alert; one silent for long is forgotten.

Reads `readings` (key: device id, value: JSON like {"temp": 21.5}, at the record's timestamp) and
writes events about devices to `device-alerts` (key: device id, value: JSON):

- {"event": "silent", "last_seen_ms": ..., "last": {...}}: no reading for `SILENCE_MS` of stream
  time (event time: other devices of the same partition, or `--idle-advance-ms`, move it on).
  Each reading replaces the device's stream-clock timer, so the alert fires once per silence.
- {"event": "no-heartbeat", "last_seen_ms": ..., "last": {...}}: nothing arrived from the
  device for `HEARTBEAT_MS` of wall-clock time. This one does not need stream time to move, so
  it also fires when the whole partition has gone quiet.
- {"event": "forgotten", "last_seen_ms": ..., "last": {...}}: the device's entry of the
  `last-seen` store expired, `FORGET_AFTER_MS` of stream time after its last reading; its
  pending timers are cancelled with it.

Each timer's time is the device's last reading plus the period, so a reading that arrives out
of order (older than the newest one seen) changes nothing. A late reading that itself moves
stream time past the device's own silence replaces the timer before it fires: silence is judged
by the other records of the partition, as in Spark's GroupState event-time timeouts. For the
same reason a device whose readings arrive more than `SILENCE_MS` behind the partition's stream
time (a clock that lags, a backlog) is reported silent after each of them.

The `last-seen` store (queryable) holds {"at": timestamp, "reading": {...}} per device; the
timers are kept in the store `watch-timers`, so they survive restarts and failover.

    processor run topologies.device_alerts --bootstrap-servers 127.0.0.1:9092
"""

from typing import Any

from processor import ProcessorContext, Topology, serdes

SILENCE_MS = 60_000
HEARTBEAT_MS = 300_000
FORGET_AFTER_MS = 24 * 60 * 60_000

topology = Topology("device-alerts")
topology.add_store(
    "last-seen",
    key_serde=serdes.StringSerde(),
    value_serde=serdes.JsonSerde(),
    ttl_ms=FORGET_AFTER_MS,
)


def on_reading(ctx: ProcessorContext, device: str, reading: Any) -> None:
    last_seen = ctx.store("last-seen")
    previous = last_seen.get(device)
    if previous is not None and previous["at"] > ctx.timestamp:
        return  # older than what we know: the alerts stay as they are
    last_seen.put(device, {"at": ctx.timestamp, "reading": reading})
    ctx.set_timer(ctx.timestamp + SILENCE_MS, name="silent")
    ctx.set_timer(ctx.wall_clock_ms + HEARTBEAT_MS, clock="wall", name="heartbeat")


def on_timer(ctx: ProcessorContext, device: str, _at_ms: int, name: str) -> None:
    last = ctx.store("last-seen").get(device)
    if last is not None:
        event = "silent" if name == "silent" else "no-heartbeat"
        ctx.forward(device, _event(event, last))


def on_forgotten(ctx: ProcessorContext, _store: str, device: str, last: Any) -> None:
    ctx.cancel_timer("silent")
    ctx.cancel_timer("heartbeat")
    ctx.forward(device, _event("forgotten", last))


def _event(event: str, last: dict[str, Any]) -> dict[str, Any]:
    return {"event": event, "last_seen_ms": last["at"], "last": last["reading"]}


(
    topology.stream("readings", key_serde=serdes.StringSerde(), value_serde=serdes.JsonSerde())
    .process(
        on_reading,
        name="watch",
        stores=["last-seen"],
        on_timer=on_timer,
        on_expire=on_forgotten,
    )
    .to("device-alerts")
)
