"""The channel between a sink task and its writer thread: batches by size and age, durable
offsets only from the writer, retries with backoff without loss, a bound on what waits, and a
writer fenced by its successor."""

from __future__ import annotations

import time
from collections.abc import Callable

from processor.runtime.sink_channel import ChannelState, SinkChannel
from processor.sinks.base import SinkRecord, SinkTask
from tests.unit.sinks.recording import Destination, RecordingSink


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _channel(sink: RecordingSink) -> SinkChannel:
    channel = SinkChannel(sink, SinkTask("db", "app", "app-db-sink", 0))
    _eventually(lambda: channel.state is ChannelState.OPEN)
    return channel


def _send(channel: SinkChannel, offsets: range) -> None:
    for offset in offsets:
        record = SinkRecord(f"k{offset}", {"n": offset}, 0, None, "t", 0, offset)
        channel.read_to(offset + 1)
        channel.add(channel.prepare(record), offset)


def test_batches_by_size_and_by_age_and_the_durable_offset_follows_the_writer() -> None:
    destination = Destination()
    channel = _channel(RecordingSink(destination, max_batch_records=3, max_batch_ms=50))
    try:
        assert channel.durable is None  # nothing written yet: nothing to commit
        _send(channel, range(7))  # two full batches handed over at once
        _eventually(lambda: channel.durable == 6)
        channel.tick(time.monotonic())  # the seventh is not old enough yet
        time.sleep(0.06)
        channel.tick(time.monotonic())
        _eventually(lambda: channel.durable == 7)
        assert [(b.first_offset, b.next_offset) for b in destination.batches] == [
            (0, 3),
            (3, 6),
            (6, 7),
        ]
        assert [item[1]["n"] for _, item in destination.rows] == list(range(7))
    finally:
        channel.close()


def test_a_failing_destination_is_retried_with_the_same_batch_until_it_takes_it() -> None:
    destination = Destination(failures_left=3)
    channel = _channel(RecordingSink(destination, max_batch_records=2))
    try:
        _send(channel, range(4))
        _eventually(lambda: channel.durable == 4, timeout=10)
        assert [item[1]["n"] for _, item in destination.rows] == [0, 1, 2, 3]
    finally:
        channel.close()


def test_what_waits_for_a_slow_writer_is_bounded_and_drains() -> None:
    destination = Destination(write_delay_s=0.05)
    sink = RecordingSink(destination, max_batch_records=10, max_buffer_bytes=3_000)
    channel = _channel(sink)
    try:
        _send(channel, range(60))  # 100 bytes an item: 6,000 bytes handed over at once
        assert channel.over_limit()
        _eventually(lambda: not channel.over_limit(), timeout=10)
        assert channel.pending_bytes <= sink.max_buffer_bytes // 2
        channel.drain(10)
        assert channel.durable == 60
    finally:
        channel.close()


def test_the_destination_says_where_to_resume_and_a_fenced_writer_stops_quietly() -> None:
    destination = Destination()
    sink = RecordingSink(destination, max_batch_records=1)
    first = _channel(sink)
    _send(first, range(2))
    _eventually(lambda: first.durable == 2)
    second = _channel(sink)  # takes the task over
    try:
        assert second.resume_at == 2
        _send(first, range(2, 3))  # the zombie's write is refused
        _eventually(lambda: first.state is ChannelState.FAILED)
        first.raise_if_failed()  # fenced: the group moves the task; not the worker's end
        assert destination.next_offset[0] == 2
        _send(second, range(2, 4))
        _eventually(lambda: second.durable == 4)
    finally:
        first.close()
        second.close()


def test_rows_batches_errors_and_paused_time_reach_the_metrics() -> None:
    from prometheus_client import CollectorRegistry

    from processor.runtime.sink_metrics import SinkMetrics

    registry = CollectorRegistry()
    metrics = SinkMetrics(registry)
    destination = Destination(failures_left=1, write_delay_s=0.02)
    sink = RecordingSink(destination, max_batch_records=5, max_buffer_bytes=500)
    sink.name = "db"
    channel = SinkChannel(sink, SinkTask("db", "app", "t", 0), observe=metrics.observer("db"))
    _eventually(lambda: channel.state is ChannelState.OPEN)
    try:
        _send(channel, range(20))
        assert channel.over_limit()
        _eventually(lambda: not channel.over_limit(), timeout=10)
        channel.drain(10)

        def value(name: str) -> float:
            found = registry.get_sample_value(name, {"sink": "db"})
            return found or 0.0

        assert value("processor_sink_rows_total") == 20
        assert value("processor_sink_batches_total") == 4
        assert value("processor_sink_errors_total") == 1
        assert value("processor_sink_batch_seconds_count") == 4
        assert value("processor_sink_paused_seconds_total") > 0
    finally:
        channel.close()
