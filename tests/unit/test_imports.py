"""Importing the public API loads no Kafka client: `confluent_kafka` (and librdkafka under it) is
imported by the runtime when a worker starts, not by `import processor`, the serdes or the
in-memory test driver."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("modules", ["processor, processor.testing", "processor.serdes"])
def test_importing_the_public_api_loads_no_kafka_client(modules: str) -> None:
    code = (
        f"import {modules}, sys; "
        "loaded = sorted(m for m in sys.modules if m.startswith('confluent_kafka')); "
        "assert not loaded, loaded"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_runtime_still_imports_the_kafka_client() -> None:
    code = "import processor.runtime.worker, sys; assert 'confluent_kafka' in sys.modules"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_a_workers_start_leaves_the_http_stack_to_the_serving_thread() -> None:
    # FastAPI, pydantic, uvicorn and httpx take about half a second to import: a worker imports
    # them on the thread that starts its HTTP server (processor.runtime.serving), while its main
    # thread checks the cluster and joins the group.
    code = (
        "import processor.cli, processor.cli.run, processor.runtime.worker, sys; "
        "heavy = ('fastapi', 'pydantic', 'uvicorn', 'httpx', 'starlette'); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy); "
        "assert not loaded, loaded"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
