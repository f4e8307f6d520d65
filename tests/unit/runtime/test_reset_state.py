"""Wiping an application's local state for `processor reset`: its stores go, its instance id
stays, and a directory a worker holds is not touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.errors import ConfigError
from processor.runtime.instance import StateDirLock
from processor.runtime.reset import wipe_state_dir


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
