"""Durations counted in fixed buckets by the code that measures them, for `/metrics` to copy.

`Histogram.observe` is a bisect and two adds: cheap enough for once per batch or per commit,
and it touches no Prometheus object (a scrape renders the `HistogramSample` the last snapshot
took, `processor.metrics`). Bucket bounds are upper bounds, inclusive, as Prometheus' `le`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

__all__ = [
    "BATCH_BOUNDS_S",
    "LATENCY_BOUNDS_S",
    "REBALANCE_BOUNDS_S",
    "Histogram",
    "HistogramSample",
    "empty",
]

BATCH_BOUNDS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Processing one consumed batch, and one commit."""
LATENCY_BOUNDS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""From a record's timestamp to its output."""
REBALANCE_BOUNDS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""From the first rebalance callback to the new assignment applied."""


@dataclass(frozen=True)
class HistogramSample:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, not cumulative; the last is above every bound
    sum: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations at most le) for each bound and +Inf, as Prometheus expects."""
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return buckets

    @property
    def count(self) -> int:
        return sum(self.counts)


def empty(bounds: tuple[float, ...]) -> HistogramSample:
    return HistogramSample(bounds, (0,) * (len(bounds) + 1))


class Histogram:
    __slots__ = ("_counts", "bounds", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram bounds must increase strictly, got {bounds}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def sample(self) -> HistogramSample:
        return HistogramSample(self.bounds, tuple(self._counts), self.sum)
