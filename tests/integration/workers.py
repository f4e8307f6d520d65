"""Worker processes for integration tests: `processor run` as a real subprocess."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Every worker test reads a 6-partition source and writes a 6-partition sink.
PARTITIONS = 6
# Fast failure detection and frequent commits, for the fault tests.
FAST = [
    "--kafka",
    "session.timeout.ms=6000",
    "--kafka",
    "heartbeat.interval.ms=500",
    "--commit-interval-ms",
    "200",
]
SESSION_TIMEOUT_S = 6.0
# The line a worker logs once its query API and /metrics listen.
SERVING = re.compile(r"serving the query API and /metrics on (http://127\.0\.0\.1:\d+)")


class WorkerProcess:
    """One `processor run` subprocess with its stderr captured to a file."""

    def __init__(
        self,
        topology: str,
        *,
        bootstrap: str,
        instance_id: str,
        state_dir: Path,
        log_dir: Path,
        env: dict[str, str],
        extra_args: list[str] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.log_path = log_dir / f"{instance_id}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in wait()/kill()
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processor.cli",
                "run",
                topology,
                "--bootstrap-servers",
                bootstrap,
                "--instance-id",
                instance_id,
                "--state-dir",
                str(state_dir),
                *(extra_args or []),
            ],
            cwd=REPO,
            env={**os.environ, **env, "PROCESSOR_INSTANCE_ID": instance_id},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, timeout: float = 60.0) -> str:
        """Where the worker serves its query API and /metrics."""
        return self.wait_for_log(SERVING.pattern, timeout).group(1)

    def wait_for_log(self, pattern: str, timeout: float, *, after: int = 0) -> re.Match[str]:
        """Wait until the log (from character `after`) matches `pattern`."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            match = regex.search(self.log(), after)
            if match:
                return match
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker {self.instance_id} exited with {self.process.returncode} before "
                    f"logging {pattern!r}:\n{self.log()[-3000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(
            f"worker {self.instance_id} did not log {pattern!r} in {timeout}s:\n"
            f"{self.log()[-3000:]}"
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        finally:
            self._log.close()
        return code

    def stop_quietly(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


def start_worker(
    topology: str,
    *,
    bootstrap: str,
    env: dict[str, str],
    workdir: Path,
    instance: str,
    extra: Sequence[str] = (),
) -> WorkerProcess:
    """A worker with the `FAST` settings and its query API on a free port, its state under
    `workdir/state/<instance>` and its log in `workdir`."""
    return WorkerProcess(
        topology,
        bootstrap=bootstrap,
        instance_id=instance,
        state_dir=workdir / "state" / instance,
        log_dir=workdir,
        env=env,
        extra_args=[*FAST, "--http-port", "0", *extra],
    )
