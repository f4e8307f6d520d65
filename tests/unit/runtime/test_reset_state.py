"""Wiping an application's local state for `processor reset`: its stores go, its instance id
stays, and a directory a worker holds is not touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor import Topology
from processor.config import WorkerConfig
from processor.errors import ConfigError
from processor.runtime.instance import StateDirLock
from processor.runtime.reset import JOINER_MAX_SILENCE_MS, ResetRequest, warming_up, wipe_state_dir
from processor.status.record import InstancePhase, InstanceStatus, StatusBoard


def _app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "state" / "app"
    (app / "0_1").mkdir(parents=True)
    (app / "0_1" / "CURRENT").write_text("rocksdb")
    (app / "global" / "rates").mkdir(parents=True)
    (app / "instance-id").write_text("host-1234\n")
    (tmp_path / "state" / "app-v2" / "0_1").mkdir(parents=True)
    return app


def test_wiping_deletes_the_stores_and_keeps_the_instance_id(tmp_path: Path) -> None:
    app = _app_dir(tmp_path)
    wipe_state_dir(app)
    assert sorted(p.name for p in app.iterdir()) == [".lock", "instance-id"]
    assert (app / "instance-id").read_text() == "host-1234\n"
    assert (tmp_path / "state" / "app-v2" / "0_1").is_dir()  # another application's


def test_a_directory_a_worker_holds_is_not_wiped(tmp_path: Path) -> None:
    app = _app_dir(tmp_path)
    worker = StateDirLock(app)
    try:
        with pytest.raises(ConfigError, match="in use by another worker"):
            wipe_state_dir(app)
    finally:
        worker.release()
    assert (app / "0_1" / "CURRENT").exists()


def test_the_directories_of_run_workers_are_found_under_the_one_given(tmp_path: Path) -> None:
    for directory in ("app", "worker-0/app", "worker-1/app", "worker-1/app-v2", "other/app"):
        (tmp_path / directory).mkdir(parents=True)
    request = ResetRequest(
        topology=Topology("app"),
        config=WorkerConfig(bootstrap_servers="x:1", application_id="app"),
        to_time_ms=None,
        state_dirs=(tmp_path, tmp_path / "missing"),
        dead_letters=False,
    )
    assert request.app_state_dirs() == [
        tmp_path / "app",
        tmp_path / "worker-0" / "app",
        tmp_path / "worker-1" / "app",
    ]


def _status(instance: str, phase: InstancePhase, updated_ms: int) -> bytes:
    return InstanceStatus(instance, phase, updated_ms=updated_ms).to_json()


def test_a_worker_warming_up_to_join_counts_as_running_while_its_status_is_fresh() -> None:
    now_ms = 1_000_000_000
    board = StatusBoard()
    board.apply(b"w1", _status("w1", InstancePhase.WARMING_UP, now_ms - 1_000))
    board.apply(b"w2", _status("w2", InstancePhase.WARMING_UP, now_ms - JOINER_MAX_SILENCE_MS - 1))
    board.apply(b"w3", _status("w3", InstancePhase.RUNNING, now_ms))  # the group tells of those
    board.apply(b"w4", _status("w4", InstancePhase.STOPPED, now_ms))
    assert warming_up(board, now_ms) == ["w1"]
