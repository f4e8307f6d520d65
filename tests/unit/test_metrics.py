"""`processor.metrics`: a worker's snapshot served as Prometheus text over HTTP, at `/metrics`
of the worker's HTTP server."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from processor.errors import ConfigError
from processor.histogram import Histogram
from processor.ids import TaskId
from processor.metrics import RestoreSample, WorkerMetrics, WorkerSnapshot
from processor.query.server import QueryServer, build_app
from processor.query.source import Owners, StoreInfo


class NoStores:
    """A worker with nothing to query: only its metrics matter here."""

    instance_id = "w1"

    def stores(self) -> Mapping[str, StoreInfo]:
        return {}

    def owners(self, task: TaskId) -> Owners:
        return Owners(None, ())

    def endpoint(self, instance: str) -> str | None:
        return None

    def instances(self) -> dict[str, dict[str, Any]]:
        return {}

    def read_local(self, task: TaskId, read: Any, *, standby: bool) -> None:
        return None

    def lags(self) -> dict[str, dict[str, Any]]:
        return {}


def _serve(metrics: WorkerMetrics, port: int = 0) -> QueryServer:
    return QueryServer(
        build_app(NoStores(), token=None, registry=metrics.registry), "127.0.0.1", port
    )


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_latest_snapshot_is_served() -> None:
    metrics = WorkerMetrics()
    server = _serve(metrics)
    try:
        metrics.publish(
            WorkerSnapshot(
                instance="w1",
                state="running",
                processed={"0_1": 42},
                active=1,
                standby=1,
                restores=(RestoreSample("0_2", standby=True, records=900, remaining=7, rate=1.5),),
                restore_totals={"0_2": 900},
                restored_before_start={"0_1": 12},
                rebalances=3,
                commits=9,
                state_dirs_deleted=2,
            )
        )
        samples = _scrape(server.port)
    finally:
        server.close()

    assert samples[("processor_worker_info", (("instance", "w1"), ("state", "running")))] == 1
    assert samples[("processor_records_processed_total", (("task", "0_1"),))] == 42
    assert samples[("processor_tasks", (("kind", "standby"),))] == 1
    assert samples[("processor_restore_records_total", (("task", "0_2"),))] == 900
    assert samples[("processor_standby_lag_records", (("task", "0_2"),))] == 7
    assert (
        samples[("processor_restore_remaining_records", (("kind", "standby"), ("task", "0_2")))]
        == 7
    )
    assert samples[("processor_task_restored_before_start_records", (("task", "0_1"),))] == 12
    assert samples[("processor_rebalances_total", ())] == 3
    assert samples[("processor_state_dirs_deleted_total", ())] == 2


def test_a_port_in_use_is_a_config_error_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"http_port.*127\.0\.0\.1:{port}"):
            _serve(WorkerMetrics(), port)


def test_a_broker_outage_shows_in_the_metrics() -> None:
    metrics = WorkerMetrics()
    server = _serve(metrics)
    try:
        metrics.publish(
            WorkerSnapshot(
                instance="w1",
                broker_reachable=False,
                broker_unreachable_seconds=12.5,
                broker_errors=3,
                producer_replacements=1,
            )
        )
        samples = _scrape(server.port)
    finally:
        server.close()

    assert samples[("processor_broker_reachable", ())] == 0
    assert samples[("processor_broker_unreachable_seconds", ())] == 12.5
    assert samples[("processor_broker_errors_total", ())] == 3
    assert samples[("processor_producer_replacements_total", ())] == 1


def test_timer_firings_are_served_by_outcome() -> None:
    metrics = WorkerMetrics()
    server = _serve(metrics)
    try:
        metrics.publish(
            WorkerSnapshot(instance="w1", timer_firings={"fired": 12, "dead_lettered": 1})
        )
        samples = _scrape(server.port)
    finally:
        server.close()

    assert samples[("processor_timer_firings_total", (("outcome", "fired"),))] == 12
    assert samples[("processor_timer_firings_total", (("outcome", "dead_lettered"),))] == 1


def test_histograms_lag_and_cache_reads_are_served() -> None:
    commits = Histogram((0.01, 0.1, 1.0))
    for seconds in (0.005, 0.01, 0.05, 3.0):
        commits.observe(seconds)
    metrics = WorkerMetrics()
    server = _serve(metrics)
    try:
        metrics.publish(
            WorkerSnapshot(
                instance="w1",
                commit_seconds=commits.sample(),
                partition_lags={("0_1", "in", 1): 40},
                consumer_lag={"0_1": 40},
                cache_hits={"counts": 9},
                cache_misses={"counts": 1},
                store_bytes={"0_1": 4096},
            )
        )
        samples = _scrape(server.port)
    finally:
        server.close()

    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "processor_commit_seconds_bucket"
    }
    # A bound is inclusive (le): 0.01 falls in the first bucket.
    assert buckets == {"0.01": 2, "0.1": 3, "1.0": 3, "+Inf": 4}
    assert samples[("processor_commit_seconds_count", ())] == 4
    assert samples[("processor_commit_seconds_sum", ())] == pytest.approx(3.065)
    lag = ("processor_consumer_lag_records", (("partition", "1"), ("task", "0_1"), ("topic", "in")))
    assert samples[lag] == 40
    assert samples[("processor_store_cache_hits_total", (("store", "counts"),))] == 9
    assert samples[("processor_store_cache_misses_total", (("store", "counts"),))] == 1
    assert samples[("processor_store_size_bytes", (("task", "0_1"),))] == 4096


def test_the_metrics_table_lists_every_metric_served() -> None:
    """The table in `processor.metrics`' docstring names exactly the metrics a worker serves."""
    import processor.metrics

    documented = {
        line.split("|")[1].strip()
        for line in (processor.metrics.__doc__ or "").splitlines()
        if line.startswith("| processor_")
    }
    served = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in WorkerMetrics().registry.collect()
    }
    assert documented == served
    assert "processor_timer_firings_total" in served
