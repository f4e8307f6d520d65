"""Schema registries for tests: a real one (Apicurio Registry) and an in-memory double.

    with LocalSchemaRegistry() as registry:
        serde = ConfluentAvroSerde(SchemaRegistry(registry.url), "orders-value", schema=...)

    serde = ConfluentAvroSerde(MemorySchemaRegistry(), "orders-value", schema=...)

From a shell: `python -m processor.testing.schema_registry run [--port N]` prints
`url: http://127.0.0.1:PORT/apis/ccompat/v7` and runs until SIGINT or SIGTERM; `... fetch`
only downloads it.

Apicurio Registry 2.6 is a Quarkus application; Maven Central serves its built distribution
(`io.apicurio:apicurio-registry-app:VERSION:tar.gz:all`: a runner jar and its `lib/`), which
`fetch_registry()` copies with `mvn` and unpacks into a cache directory, once. It runs with the
`java` on PATH (17 or newer; Apicurio 3 would need 21), keeps its schemas in an in-memory H2
database (gone when it stops), and answers Confluent's REST API under `/apis/ccompat/v7`.

A registry's lifecycle (anything else raises `SchemaRegistryError`):

```
CREATED --start()--> RUNNING --stop()--> STOPPED
```
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import enum
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

from processor.kafka.schema_registry import SchemaNotFoundError, SchemaRegistryError

__all__ = [
    "APICURIO_VERSION",
    "LocalSchemaRegistry",
    "MemorySchemaRegistry",
    "RegistryState",
    "default_registry_dir",
    "fetch_registry",
]

APICURIO_VERSION = "2.6.13.Final"
"""The Apicurio Registry release fetched from Maven Central."""

CACHE_ENV = "PROCESSOR_SCHEMA_REGISTRY_CACHE"
"""Environment variable naming the unpacked distribution's directory, overriding the default."""

CCOMPAT_PATH = "/apis/ccompat/v7"
"""Where Apicurio serves the Confluent-compatible API."""

_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_RUNNER = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
_MARKER = ".fetched"
_JVM = ("-Xmx384m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")


# --- fetching the distribution ------------------------------------------------------------------


def default_registry_dir() -> Path:
    """`$PROCESSOR_SCHEMA_REGISTRY_CACHE` if set, else `<root>/.cache/apicurio-registry-VERSION`.

    `<root>` is this repository when running from a checkout, else the working directory.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    root = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return root / ".cache" / f"apicurio-registry-{APICURIO_VERSION}"


def _require(program: str, install_hint: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise SchemaRegistryError(f"`{program}` is not on PATH; {install_hint}")
    return path


def _java() -> str:
    return _require(
        "java",
        "install a Java runtime, version 17 or newer, "
        "e.g. `apt-get install openjdk-17-jre-headless`",
    )


def _is_complete(directory: Path) -> bool:
    marker = directory / _MARKER
    return marker.is_file() and marker.read_text().strip() == _ARTIFACT


def fetch_registry(directory: Path | None = None) -> Path:
    """Download and unpack Apicurio Registry into `directory` (default `default_registry_dir()`);
    return it.

    Does nothing when an earlier fetch of the same version completed there; concurrent callers
    wait for one another. Raises `SchemaRegistryError` when `mvn` or `java` is missing or Maven
    fails.
    """
    target = (directory if directory is not None else default_registry_dir()).resolve()
    if _is_complete(target):
        return target
    _java()
    mvn = _require(
        "mvn", "install Apache Maven, e.g. `apt-get install maven` or `brew install maven`"
    )
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(target):
            return target
        print(
            f"fetching Apicurio Registry {APICURIO_VERSION} with Maven into {target} ...",
            file=sys.stderr,
            flush=True,
        )
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="processor-apicurio-") as scratch:
            command = [
                mvn,
                "-q",
                "-B",
                f"{_DEPENDENCY_PLUGIN}:copy",
                f"-Dartifact={_ARTIFACT}",
                f"-DoutputDirectory={scratch}",
            ]
            done = subprocess.run(
                command,
                cwd=scratch,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
            archives = list(Path(scratch).glob("*.tar.gz"))
            if done.returncode != 0 or len(archives) != 1:
                tail = "\n".join(done.stdout.splitlines()[-30:])
                raise SchemaRegistryError(
                    f"fetching Apicurio Registry failed (`{' '.join(command)}` exited with "
                    f"{done.returncode}); Maven needs access to Maven Central. Its output "
                    f"ends:\n{tail}"
                )
            for stale in (target / "lib", target / "meta"):
                shutil.rmtree(stale, ignore_errors=True)
            with tarfile.open(archives[0]) as archive:
                archive.extractall(target, filter="data")
        if not (target / _RUNNER).is_file():
            raise SchemaRegistryError(
                f"the Apicurio Registry distribution unpacked into {target} has no {_RUNNER}"
            )
        (target / _MARKER).write_text(_ARTIFACT + "\n")
        print(
            f"fetched Apicurio Registry in {time.monotonic() - began:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return target


# --- the registry -------------------------------------------------------------------------------


class RegistryState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"


_TRANSITIONS: dict[RegistryState, frozenset[RegistryState]] = {
    RegistryState.CREATED: frozenset({RegistryState.RUNNING}),
    RegistryState.RUNNING: frozenset({RegistryState.STOPPED}),
    RegistryState.STOPPED: frozenset(),
}

# Registries still running when the interpreter exits are killed rather than left behind.
_LIVE: set[LocalSchemaRegistry] = set()


@atexit.register
def _kill_leftovers() -> None:
    for registry in list(_LIVE):
        registry.stop()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalSchemaRegistry:
    """One Apicurio Registry process on 127.0.0.1 with in-memory storage.

    Keyword arguments:
        port: the HTTP port. Default: a free port.
        registry_dir: the unpacked distribution. Default: `fetch_registry()`'s, fetched on
            first start.
        startup_timeout: seconds start() waits for the Confluent-compatible API to answer.
        stop_timeout: seconds stop() waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        registry_dir: Path | None = None,
        startup_timeout: float = 90.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self._fixed_port = port
        self._port = port if port is not None else _free_port()
        self._registry_dir = registry_dir
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._directory = Path(tempfile.mkdtemp(prefix="processor-apicurio-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._state = RegistryState.CREATED
        self.startup_seconds: float | None = None
        """How long start() took."""

    @property
    def url(self) -> str:
        """The base URL of the Confluent-compatible API, for `SchemaRegistry(url)`."""
        return f"http://127.0.0.1:{self._port}{CCOMPAT_PATH}"

    @property
    def state(self) -> RegistryState:
        return self._state

    @property
    def log_path(self) -> Path:
        return self._directory / "registry.log"

    def __repr__(self) -> str:
        return f"LocalSchemaRegistry({self.url}, {self._state.value})"

    def _move(self, target: RegistryState) -> None:
        if target not in _TRANSITIONS[self._state]:
            raise SchemaRegistryError(
                f"schema registry {self.url} cannot go from {self._state.value} to {target.value}"
            )
        self._state = target

    def start(self) -> LocalSchemaRegistry:
        """Start the registry and wait until its API answers; return self.

        Raises `SchemaRegistryError` (with the end of its log) if it exits or does not answer
        in time; the process is killed then.
        """
        if RegistryState.RUNNING not in _TRANSITIONS[self._state]:
            self._move(RegistryState.RUNNING)  # raises, naming the illegal transition
        began = time.monotonic()
        registry_dir = self._registry_dir if self._registry_dir is not None else fetch_registry()
        java = _java()
        for attempt in range(3):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._launch(java, registry_dir)
            try:
                self._await_ready(began + self.startup_timeout, log_start)
            except _PortTaken:
                self._reap()
                if self._fixed_port is not None or attempt == 2:
                    raise SchemaRegistryError(
                        f"schema registry could not listen on 127.0.0.1:{self._port}: address "
                        f"in use; its log ends:\n{self._log_tail(log_start)}"
                    ) from None
                self._port = _free_port()
                continue
            except BaseException:
                self._kill()
                raise
            break
        self.startup_seconds = time.monotonic() - began
        self._move(RegistryState.RUNNING)
        _LIVE.add(self)
        return self

    def stop(self) -> None:
        """Stop the registry (SIGTERM, then SIGKILL after `stop_timeout` seconds) and remove its
        directory. Does nothing unless it is running."""
        if self._state is not RegistryState.RUNNING:
            return
        self._send(signal.SIGTERM)
        assert self._process is not None
        try:
            self._process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._send(signal.SIGKILL)
        self._reap()
        self._move(RegistryState.STOPPED)
        shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> LocalSchemaRegistry:
        if self._state is not RegistryState.RUNNING:
            try:
                self.start()
            except BaseException:
                shutil.rmtree(self._directory, ignore_errors=True)  # no __exit__ follows
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _launch(self, java: str, registry_dir: Path) -> None:
        command = [
            java,
            *_JVM,
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self._port}",
            # Match schemas by their canonical form, as Confluent's registry does, so a lookup
            # or registration finds a schema registered with other whitespace or key order.
            "-Dregistry.ccompat.use-canonical-hash=true",
            "-jar",
            str(registry_dir / _RUNNER),
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"=== starting Apicurio Registry on 127.0.0.1:{self._port}\n".encode())
            log.flush()
            # A session of its own: a terminal's Ctrl-C reaches us, and we stop it cleanly.
            self._process = subprocess.Popen(
                command,
                cwd=self._directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _await_ready(self, deadline: float, log_start: int) -> None:
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                tail = self._log_tail(log_start)
                if "already in use" in tail or "Port already bound" in tail:
                    raise _PortTaken
                raise SchemaRegistryError(
                    f"schema registry exited with code {code} while starting; "
                    f"{self.log_path} ends:\n{tail}"
                )
            if time.monotonic() >= deadline:
                raise SchemaRegistryError(
                    f"schema registry at {self.url} did not answer within "
                    f"{self.startup_timeout:.0f}s; {self.log_path} ends:\n"
                    f"{self._log_tail(log_start)}"
                )
            if _answers(f"{self.url}/subjects"):
                return
            time.sleep(0.2)

    def _send(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def _kill(self) -> None:
        self._send(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            self._process = None
        _LIVE.discard(self)

    def _log_tail(self, start: int = 0, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(start)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no registry.log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


class _PortTaken(Exception):
    """The registry lost a race for its free-picked port."""


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            status: int = response.status
            return status == 200
    except (OSError, urllib.error.URLError):
        return False


# --- the in-memory double -----------------------------------------------------------------------


class MemorySchemaRegistry:
    """A schema registry in this process's memory, with `SchemaRegistry`'s methods and errors:
    for unit tests and the `TopologyTestDriver`, where no registry runs.

    Like a real registry, it gives one id to each distinct schema (compared as parsed JSON) and
    lists under each subject the schemas registered there. It checks no compatibility.
    """

    url = "memory://schema-registry"

    def __init__(self) -> None:
        self._texts: list[str] = []  # id - 1 -> schema text
        self._ids: dict[str, int] = {}  # canonical JSON -> id
        self._subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema_str: str, *, schema_type: str = "AVRO") -> int:
        key = self._key(schema_str)
        schema_id = self._ids.get(key)
        if schema_id is None:
            self._texts.append(schema_str)
            schema_id = self._ids[key] = len(self._texts)
        versions = self._subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def lookup(self, subject: str, schema_str: str, *, schema_type: str = "AVRO") -> int:
        schema_id = self._ids.get(self._key(schema_str))
        if schema_id is None or schema_id not in self._subjects.get(subject, ()):
            raise SchemaNotFoundError(
                f"schema registry at {self.url}: the schema is not registered under subject "
                f"{subject!r}; register the schema first, or let the serde register it",
                url=self.url,
                status=404,
                error_code=40403,
            )
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        if not 1 <= schema_id <= len(self._texts):
            raise SchemaNotFoundError(
                f"schema id {schema_id} unknown to the registry at {self.url}",
                url=self.url,
                status=404,
                error_code=40403,
            )
        return self._texts[schema_id - 1]

    def subjects(self) -> dict[str, list[int]]:
        """The schema ids registered under each subject, oldest first."""
        return {subject: list(ids) for subject, ids in self._subjects.items()}

    @staticmethod
    def _key(schema_str: str) -> str:
        try:
            return json.dumps(json.loads(schema_str), sort_keys=True, separators=(",", ":"))
        except json.JSONDecodeError:
            return schema_str.strip()

    def __repr__(self) -> str:
        return f"MemorySchemaRegistry({len(self._texts)} schemas)"


# --- command line -------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _run(port: int | None, timeout: float) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_interrupted)
    registry = LocalSchemaRegistry(port=port, startup_timeout=timeout)
    try:
        registry.start()
        print(f"url: {registry.url}", flush=True)
        print(
            f"schema registry ready in {registry.startup_seconds:.1f}s; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while registry._process is not None and registry._process.poll() is None:
            time.sleep(0.5)
        print(
            f"the registry exited on its own; its log ends:\n{registry._log_tail()}",
            file=sys.stderr,
        )
        return 1
    except _Interrupted:
        return 0
    except SchemaRegistryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        registry.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processor.testing.schema_registry",
        description=(
            f"Run a local Apicurio Registry {APICURIO_VERSION} (in-memory storage) with its "
            "Confluent-compatible API."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start a registry; print its URL; stop on Ctrl-C")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    run.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the registry to answer (default: 90)",
    )
    fetch = commands.add_parser("fetch", help="only download and unpack the registry")
    fetch.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"where to unpack it (default: ${CACHE_ENV} or {default_registry_dir()})",
    )
    args = parser.parse_args(argv)
    if args.command == "fetch":
        try:
            print(fetch_registry(args.dir))
        except SchemaRegistryError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    return _run(args.port, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
