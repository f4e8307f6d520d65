"""`processor run --workers N`: N worker processes on one host, each a full group member.

Each child gets its own state dir (`<state_dir>/worker-<i>`) and, when an instance id is
configured, the id `<id>-<i>`; with an HTTP port P, child i serves on P + i (0: each any free
port; none: none). SIGTERM/SIGINT are passed to every child; the supervisor exits
with the first non-zero exit code of its children, and stops the others when one fails.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

log = logging.getLogger("processor.supervisor")

WORKER_DIR_PREFIX = "worker-"
"""Child i's state directory is `<state_dir>/worker-<i>`."""


def child_arguments(
    base: list[str],
    index: int,
    state_dir: Path,
    instance_id: str | None,
    http_port: int | None = None,
) -> list[str]:
    args = [*base, "--state-dir", str(state_dir / f"{WORKER_DIR_PREFIX}{index}")]
    if instance_id is not None:
        args += ["--instance-id", f"{instance_id}-{index}"]
    args += [
        "--http-port",
        "off" if http_port is None else str(http_port + index if http_port else 0),
    ]
    return args


def supervise(worker_args: list[list[str]]) -> int:
    children = [
        subprocess.Popen([sys.executable, "-m", "processor.cli", *args]) for args in worker_args
    ]
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    exit_code = 0
    while any(child.poll() is None for child in children):
        for index, child in enumerate(children):
            code = child.poll()
            if code not in (None, 0) and exit_code == 0:
                exit_code = code
                log.error("worker %d exited with %d; stopping the others", index, code)
                if not stopping:
                    stopping = True
                    for other in children:
                        if other.poll() is None:
                            other.terminate()
        time.sleep(0.2)
    for child in children:
        if child.returncode not in (None, 0) and exit_code == 0:
            exit_code = child.returncode
    return exit_code
