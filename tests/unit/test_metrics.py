"""`processor.metrics`: a worker's snapshot served as Prometheus text over HTTP."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from processor.errors import ConfigError
from processor.metrics import RestoreSample, WorkerMetrics, WorkerSnapshot


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
    port = metrics.serve("127.0.0.1", 0)
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
        samples = _scrape(port)
    finally:
        metrics.close()

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
            WorkerMetrics().serve("127.0.0.1", port)
