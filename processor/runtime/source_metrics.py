"""Prometheus metrics of the sources running on a worker (served at `/metrics`).

| metric | labels | meaning |
| --- | --- | --- |
| processor_source_records_total | source | records a source task produced (again after an abort) |
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

__all__ = ["SourceMetrics"]


class SourceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._records = Counter(
            "processor_source_records",
            "records produced by sources",
            ["source"],
            registry=registry,
        )

    def counter(self) -> Callable[[str, int], None]:
        """What a source task calls with (source name, records produced)."""

        def count(source: str, records: int) -> None:
            self._records.labels(source).inc(records)

        return count
