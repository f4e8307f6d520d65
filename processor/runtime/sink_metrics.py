"""Prometheus metrics of the sinks running on a worker, per sink (served at `/metrics` with the
worker's others; `processor.metrics` lists those).

| metric | labels | meaning |
| --- | --- | --- |
| processor_sink_rows_total | sink | records written to the destination (in batches it took) |
| processor_sink_batches_total | sink | batches the destination took |
| processor_sink_batch_seconds | sink | how long writing one batch took (histogram) |
| processor_sink_errors_total | sink | failed writes and opens (each retried with backoff) |
| processor_sink_paused_seconds_total | sink | time the sink's input was paused for its writer |
| processor_sink_buffered_bytes_max | sink | the most bytes one task held for its writer |

The writer threads update them as they go (prometheus_client's metrics are thread-safe); the
worker's thread adds the paused time.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["SinkMetrics"]

_BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._rows = Counter(
            "processor_sink_rows", "records written by sinks", ["sink"], registry=registry
        )
        self._batches = Counter(
            "processor_sink_batches", "batches written by sinks", ["sink"], registry=registry
        )
        self._seconds = Histogram(
            "processor_sink_batch_seconds",
            "time to write one batch",
            ["sink"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self._errors = Counter(
            "processor_sink_errors", "failed sink writes (retried)", ["sink"], registry=registry
        )
        self._paused = Counter(
            "processor_sink_paused_seconds",
            "time a sink's input was paused",
            ["sink"],
            registry=registry,
        )

        self._buffered = Gauge(
            "processor_sink_buffered_bytes_max",
            "the most bytes one task of the sink held for its writer",
            ["sink"],
            registry=registry,
        )

    def observer(self, sink: str) -> Callable[[str, float], None]:
        """What a `SinkChannel` of `sink` reports to: (what, amount)."""
        rows, batches = self._rows.labels(sink), self._batches.labels(sink)
        seconds, errors = self._seconds.labels(sink), self._errors.labels(sink)
        paused, buffered = self._paused.labels(sink), self._buffered.labels(sink)
        most = [0.0]

        def observe(what: str, amount: float) -> None:
            if what == "rows":
                rows.inc(amount)
                batches.inc()
            elif what == "batch_seconds":
                seconds.observe(amount)
            elif what == "errors":
                errors.inc(amount)
            elif what == "paused_seconds":
                paused.inc(amount)
            elif what == "buffered_bytes" and amount > most[0]:
                most[0] = amount
                buffered.set(amount)

        return observe
