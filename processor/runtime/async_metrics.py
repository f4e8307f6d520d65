"""Prometheus metrics of the async operators running on a worker (served at `/metrics` with the
worker's others; `processor.metrics` lists those).

| metric | labels | meaning |
| --- | --- | --- |
| processor_async_calls_total | operator, outcome (ok, error) | calls ended (each retry within) |
| processor_async_call_seconds | operator | from a call's start to its outcome (histogram) |
| processor_async_calls_in_flight | | calls running on the worker's event loop now |

The worker's thread records a call when its outcome reaches the task (`AsyncChannel.complete`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from processor.runtime.async_runner import AsyncRunner

__all__ = ["AsyncMetrics"]

_CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AsyncMetrics:
    def __init__(self, registry: CollectorRegistry, runner: AsyncRunner) -> None:
        self._calls = Counter(
            "processor_async_calls",
            "calls of async operators ended, by outcome",
            ["operator", "outcome"],
            registry=registry,
        )
        self._seconds = Histogram(
            "processor_async_call_seconds",
            "from a call's start to its outcome",
            ["operator"],
            buckets=_CALL_BUCKETS,
            registry=registry,
        )
        in_flight = Gauge(
            "processor_async_calls_in_flight",
            "calls of async operators running on this worker's event loop",
            registry=registry,
        )
        in_flight.set_function(lambda: runner.in_flight)

    def observe(self, operator: str, ok: bool, seconds: float) -> None:
        self._calls.labels(operator, "ok" if ok else "error").inc()
        self._seconds.labels(operator).observe(seconds)
