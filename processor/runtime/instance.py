"""A worker's stable identity and its claim on its state directory.

The instance id is configured, or generated once and kept in `<state_dir>/<app>/instance-id`, so
a restarted worker is recognised and gets its tasks back. A lock file stops two live workers
from sharing one state directory (and with it one instance id).
"""

from __future__ import annotations

import fcntl
import os
import socket
import uuid
from pathlib import Path
from typing import IO

from processor.errors import ConfigError


class StateDirLock:
    """Holds an exclusive lock on `<app_state_dir>/.lock` until `release()`."""

    def __init__(self, app_state_dir: Path) -> None:
        try:
            app_state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError("state_dir", f"cannot create {app_state_dir}: {e.strerror}") from e
        self.path = app_state_dir / ".lock"
        self._file: IO[str] | None = open(self.path, "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            self._file = None
            raise ConfigError(
                "state_dir",
                f"{app_state_dir} is in use by another worker (pid {holder}); give each worker "
                "its own --state-dir (processor run --workers N does this for you)",
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def resolve_instance_id(configured: str | None, app_state_dir: Path) -> str:
    """The configured id, else the one kept in the state dir, else a new one (then kept)."""
    if configured is not None:
        return configured
    path = app_state_dir / "instance-id"
    if path.exists():
        kept = path.read_text().strip()
        if kept:
            return kept
    generated = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(generated + "\n")
    temporary.replace(path)
    return generated
