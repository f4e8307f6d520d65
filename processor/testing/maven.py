"""Java artifacts for the services tests start (`java_service.py`), fetched from Maven Central
with `mvn` into a cache directory, once.

    lib_dir = fetch_once(
        default_cache("PROCESSOR_KAFKA_CACHE", "kafka-4.1.1/lib"),
        what="Kafka 4.1.1 jars",
        marker="kafka 4.1.1 pom sha256 ...",   # names what a completed fetch put there
        error=BrokerError,
        populate=copy_jars,                    # (Maven, directory) -> "47 jars"
    )

A fetch that completed leaves `.fetched` holding its marker; a fetch of the same marker into the
same directory does nothing then. `.fetch.lock` makes concurrent fetches wait for one another.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from processor.errors import ProcessorError

__all__ = ["MARKER", "Maven", "default_cache", "fetch_once", "java_executable", "require"]

JAVA_HINT = (
    "install a Java runtime, version 17 or newer, "
    "e.g. `apt-get install openjdk-17-jre-headless` or `brew install openjdk@17`"
)
MAVEN_HINT = "install Apache Maven, e.g. `apt-get install maven` or `brew install maven`"
MARKER = ".fetched"
"""The file whose text names what a completed fetch put into its directory."""

_TAIL_LINES = 30


def default_cache(env: str, name: str) -> Path:
    """`$env` if set, else `<root>/.cache/<name>`: `<root>` is this repository when running from
    a checkout, else the working directory."""
    override = os.environ.get(env)
    if override:
        return Path(override).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    root = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return root / ".cache" / name


def require(program: str, install_hint: str, error: type[ProcessorError]) -> str:
    """The path of `program` on PATH; raises `error` with `install_hint` when it is missing."""
    path = shutil.which(program)
    if path is None:
        raise error(f"`{program}` is not on PATH; {install_hint}")
    return path


def java_executable(error: type[ProcessorError]) -> str:
    return require("java", JAVA_HINT, error)


@dataclass(frozen=True)
class Maven:
    """`mvn`, run in a scratch directory that lives as long as one fetch."""

    executable: str
    scratch: Path
    what: str
    """What is being fetched, for the error message: "Kafka 4.1.1 jars"."""
    error: type[ProcessorError]

    def run(self, *arguments: str) -> None:
        """Run `mvn -q -B *arguments`; raise `error` quoting the end of its output if it fails."""
        command = [self.executable, "-q", "-B", *arguments]
        done = subprocess.run(
            command,
            cwd=self.scratch,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            tail = "\n".join(done.stdout.splitlines()[-_TAIL_LINES:])
            raise self.error(
                f"fetching {self.what} failed (`{' '.join(command)}` exited with "
                f"{done.returncode}); Maven needs access to Maven Central. Its output ends:\n{tail}"
            )


def _is_complete(directory: Path, marker: str) -> bool:
    path = directory / MARKER
    return path.is_file() and path.read_text().strip() == marker


def fetch_once(
    directory: Path,
    *,
    what: str,
    marker: str,
    error: type[ProcessorError],
    populate: Callable[[Maven, Path], str],
) -> Path:
    """Fill `directory` with `populate(maven, directory)` unless an earlier fetch whose marker
    was `marker` completed there; return the directory, resolved.

    `populate` runs Maven and puts what it fetched into the directory; it returns a few words
    on what that was, for the progress line. Concurrent callers (pytest-xdist workers) wait for
    one another. Raises `error` when `java` or `mvn` is missing or Maven fails.
    """
    directory = directory.resolve()
    if _is_complete(directory, marker):
        return directory
    java_executable(error)
    mvn = require("mvn", MAVEN_HINT, error)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(directory, marker):
            return directory
        print(f"fetching {what} with Maven into {directory} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        # Maven works in a scratch directory, so an installed package's directory stays clean.
        with tempfile.TemporaryDirectory(prefix="processor-maven-") as scratch:
            fetched = populate(Maven(mvn, Path(scratch), what, error), directory)
        (directory / MARKER).write_text(marker + "\n")
        print(f"fetched {fetched} in {time.monotonic() - began:.1f}s", file=sys.stderr, flush=True)
    return directory
