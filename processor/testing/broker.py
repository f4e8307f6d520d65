"""A real single-node Kafka broker for tests and local runs: one JVM, KRaft, broker and controller.

    with LocalBroker() as broker:
        run_against(broker.bootstrap_servers)   # "127.0.0.1:PORT"

From a shell: `python -m processor.testing.broker run [--data-dir DIR] [--port N]` prints
`bootstrap: 127.0.0.1:PORT` and runs until SIGINT or SIGTERM; `... fetch` only downloads the jars.

The jars come from Maven Central through `mvn` (see `broker-pom.xml`) into a cache directory,
once; the broker runs with the `java` on PATH (17 or newer).

A broker's lifecycle (anything else raises `BrokerError`):

```
CREATED --start()--> RUNNING --stop() / kill()--> STOPPED --start()--> RUNNING ...
CREATED, STOPPED --close()--> CLOSED            (close() on RUNNING stops first)
CREATED, STOPPED, RUNNING --restart()--> RUNNING (on the same ports; RUNNING is killed first)
```

`stop()` and `kill()` on a broker that is not running do nothing, so finalizers can call them
freely. A broker's directory holds everything it owns:

```
server.properties   written on every start (ports may change between starts)
log4j2.xml          WARN and above, plus the "Kafka Server started" line
broker.log          the JVM's stdout and stderr, appended across starts
cluster-id          the KRaft cluster id, kept so the directory can be started again
kraft/              log.dirs: the metadata log and every topic's partitions
```
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import enum
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

from processor.errors import BrokerError
from processor.kafka.admin_probe import broker_answers

__all__ = ["KAFKA_VERSION", "BrokerState", "LocalBroker", "default_cache_dir", "fetch_broker"]

KAFKA_VERSION = "4.1.1"
"""The Kafka version `broker-pom.xml` names."""

CACHE_ENV = "PROCESSOR_KAFKA_CACHE"
"""Environment variable naming the jar directory, overriding `default_cache_dir()`."""

_POM = Path(__file__).with_name("broker-pom.xml")
_MARKER = ".fetched"
_BROKER_JVM = (
    "-Xmx1g",
    "-Xms256m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# The storage tool runs for a second: a small heap and the quick JIT tier start it faster.
_TOOL_JVM = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
_LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO"/>
    <Root level="WARN">
      <AppenderRef ref="STDOUT"/>
    </Root>
  </Loggers>
</Configuration>
"""
# Single node, fast feedback. Internal topics get few partitions so the first consumer group
# or transaction does not wait for 50 partitions to be created. A short broker session lets a
# broker restarted after kill() register again in ~3s: the controller refuses the new
# incarnation until the killed one's session expires (9s by default).
_SINGLE_NODE_CONFIG: dict[str, str] = {
    "num.partitions": "1",
    "default.replication.factor": "1",
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    "group.min.session.timeout.ms": "1000",
    "log.cleaner.backoff.ms": "500",
    "log.cleaner.min.compaction.lag.ms": "0",
    "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
}


# --- fetching the jars ------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The jar directory: `$PROCESSOR_KAFKA_CACHE` if set, else `<root>/.cache/kafka-VERSION/lib`.

    `<root>` is this repository when running from a checkout, else the working directory.
    """
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    root = checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()
    return root / ".cache" / f"kafka-{KAFKA_VERSION}" / "lib"


def _require(program: str, install_hint: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise BrokerError(f"`{program}` is not on PATH; {install_hint}")
    return path


def _java() -> str:
    return _require(
        "java",
        "install a Java runtime, version 17 or newer (Kafka 4.1 needs it), "
        "e.g. `apt-get install openjdk-17-jre-headless` or `brew install openjdk@17`",
    )


def _pom_digest() -> str:
    return f"kafka {KAFKA_VERSION} pom sha256 {hashlib.sha256(_POM.read_bytes()).hexdigest()}\n"


def _is_complete(lib_dir: Path) -> bool:
    marker = lib_dir / _MARKER
    return marker.is_file() and marker.read_text() == _pom_digest()


def fetch_broker(cache_dir: Path | None = None) -> Path:
    """Download the broker's jars into `cache_dir` (default `default_cache_dir()`); return it.

    Does nothing when an earlier fetch of the same pom completed there. Concurrent callers
    (pytest-xdist workers) wait for one another. Raises `BrokerError` when `mvn` or `java`
    is missing or Maven fails.
    """
    lib_dir = (cache_dir if cache_dir is not None else default_cache_dir()).resolve()
    if _is_complete(lib_dir):
        return lib_dir
    _java()
    mvn = _require(
        "mvn", "install Apache Maven, e.g. `apt-get install maven` or `brew install maven`"
    )
    lib_dir.mkdir(parents=True, exist_ok=True)
    with open(lib_dir / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_complete(lib_dir):
            return lib_dir
        print(
            f"fetching Kafka {KAFKA_VERSION} jars with Maven into {lib_dir} ...",
            file=sys.stderr,
            flush=True,
        )
        began = time.monotonic()
        # Maven gets a scratch copy of the pom, so an installed package's directory stays clean.
        with tempfile.TemporaryDirectory(prefix="processor-kafka-pom-") as scratch:
            pom = Path(scratch) / "pom.xml"
            shutil.copyfile(_POM, pom)
            command = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={lib_dir}",
                "-DincludeScope=runtime",
            ]
            done = subprocess.run(
                command,
                cwd=scratch,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
        if done.returncode != 0:
            tail = "\n".join(done.stdout.splitlines()[-30:])
            raise BrokerError(
                f"fetching the Kafka jars failed (`{' '.join(command)}` exited with "
                f"{done.returncode}); Maven needs access to Maven Central. Its output ends:\n{tail}"
            )
        (lib_dir / _MARKER).write_text(_pom_digest())
        jars = len(list(lib_dir.glob("*.jar")))
        print(
            f"fetched {jars} jars in {time.monotonic() - began:.1f}s", file=sys.stderr, flush=True
        )
    return lib_dir


# --- the broker ---------------------------------------------------------------------------------


class BrokerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    CLOSED = "closed"


_TRANSITIONS: dict[BrokerState, frozenset[BrokerState]] = {
    BrokerState.CREATED: frozenset({BrokerState.RUNNING, BrokerState.CLOSED}),
    BrokerState.RUNNING: frozenset({BrokerState.STOPPED}),
    BrokerState.STOPPED: frozenset({BrokerState.RUNNING, BrokerState.CLOSED}),
    BrokerState.CLOSED: frozenset(),
}

# Brokers still running when the interpreter exits are killed rather than left behind (held
# strongly, so a running broker that its owner dropped is still found here).
_LIVE: set[LocalBroker] = set()


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_LIVE):
        broker.kill()
        broker.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


class LocalBroker:
    """One Kafka broker process on 127.0.0.1, with its controller, in a directory it owns.

    Keyword arguments:
        data_dir: the broker's directory; created if missing, kept on close, and a broker
            started on it again finds its topics and offsets. Default: a fresh temporary
            directory, removed on close().
        port: the client port. Default: a free port (the controller port is always free-picked).
        lib_dir: the jar directory. Default: `fetch_broker()`'s, fetched on first start.
        config: server.properties entries added to, or overriding, the single-node defaults.
        startup_timeout: seconds start() waits for the broker to answer a metadata request.
        stop_timeout: seconds stop() waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        lib_dir: Path | None = None,
        config: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self._owns_dir = data_dir is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="processor-kafka-"))
            if data_dir is None
            else Path(data_dir).resolve()
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port
        self._port = port if port is not None else _free_port()
        self._controller_port = _free_port()
        self._lib_dir = lib_dir
        self._config = dict(config or {})
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._state = BrokerState.CREATED
        self.startup_seconds: float | None = None
        """How long the last successful start() took, storage formatting included."""

    # -- what callers read

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def state(self) -> BrokerState:
        return self._state

    @property
    def log_path(self) -> Path:
        return self.directory / "broker.log"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive (it may have died since start())."""
        return self._process is not None and self._process.poll() is None

    @property
    def cluster_id(self) -> str:
        """The KRaft cluster id, kept in the directory; made on first use."""
        path = self.directory / "cluster-id"
        if not path.is_file():
            path.write_text(_new_cluster_id() + "\n")
        return path.read_text().strip()

    def __repr__(self) -> str:
        return f"LocalBroker({self.bootstrap_servers}, {self._state.value}, {self.directory})"

    # -- lifecycle

    def _move(self, target: BrokerState) -> None:
        if target not in _TRANSITIONS[self._state]:
            raise BrokerError(
                f"broker at {self.directory} cannot go from {self._state.value} to {target.value}"
            )
        self._state = target

    def start(self) -> LocalBroker:
        """Start the broker and wait until it answers; return self.

        Raises `BrokerError` (with the end of broker.log) if it exits or does not answer in
        time; the process is killed then, and the broker stays in its previous state.
        """
        if BrokerState.RUNNING not in _TRANSITIONS[self._state]:
            self._move(BrokerState.RUNNING)  # raises, naming the illegal transition
        began = time.monotonic()
        lib_dir = self._lib_dir if self._lib_dir is not None else fetch_broker()
        java = _java()
        for attempt in range(3):
            self._write_config()
            self._format_storage(java, lib_dir)
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._launch(java, lib_dir)
                self._await_ready(began + self.startup_timeout, log_start)
            except _PortTaken:
                self._reap()
                if self._fixed_port is not None or attempt == 2:
                    raise BrokerError(
                        f"Kafka broker could not listen on 127.0.0.1:{self._port} or "
                        f":{self._controller_port}: address in use; broker.log ends:\n"
                        f"{self._log_tail(log_start)}"
                    ) from None
                self._port, self._controller_port = _free_port(), _free_port()
                continue
            except BaseException:
                self._send(signal.SIGKILL)
                self._reap()
                raise
            break
        self.startup_seconds = time.monotonic() - began
        self._move(BrokerState.RUNNING)
        _LIVE.add(self)
        return self

    def stop(self) -> None:
        """Shut the broker down cleanly (SIGTERM), or SIGKILL it after `stop_timeout` seconds."""
        if self._state is not BrokerState.RUNNING:
            return
        self._send(signal.SIGTERM)
        assert self._process is not None
        try:
            self._process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._send(signal.SIGKILL)
        self._reap()
        self._move(BrokerState.STOPPED)

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would."""
        if self._state is not BrokerState.RUNNING:
            return
        self._send(signal.SIGKILL)
        self._reap()
        self._move(BrokerState.STOPPED)

    def restart(self, *, port_timeout: float = 30.0) -> LocalBroker:
        """Start the broker again on its directory and on the same client and controller
        ports, so clients keep their bootstrap address; wait until it answers; return self.
        A running broker is killed first (SIGKILL: a crash and a restart).

        Where `start()` moves to other free ports when one was taken meanwhile, `restart()`
        waits up to `port_timeout` seconds for its own ports to be free again (a client's
        connection may hold one as its local port for a moment). Raises `BrokerError` like
        `start()`, the broker staying STOPPED.
        """
        self.kill()
        if BrokerState.RUNNING not in _TRANSITIONS[self._state]:
            self._move(BrokerState.RUNNING)  # raises, naming the illegal transition
        began = time.monotonic()
        lib_dir = self._lib_dir if self._lib_dir is not None else fetch_broker()
        java = _java()
        while True:
            self._write_config()
            self._format_storage(java, lib_dir)
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._launch(java, lib_dir)
                self._await_ready(began + self.startup_timeout, log_start)
            except _PortTaken:
                self._reap()
                if time.monotonic() - began >= port_timeout:
                    raise BrokerError(
                        f"Kafka broker could not listen again on 127.0.0.1:{self._port} or "
                        f":{self._controller_port} within {port_timeout:.0f}s: address in use; "
                        f"broker.log ends:\n{self._log_tail(log_start)}"
                    ) from None
                time.sleep(0.5)
                continue
            except BaseException:
                self._send(signal.SIGKILL)
                self._reap()
                raise
            break
        self.startup_seconds = time.monotonic() - began
        self._move(BrokerState.RUNNING)
        _LIVE.add(self)
        return self

    def close(self) -> None:
        """Stop the broker if running; remove its directory if it was a temporary one."""
        if self._state is BrokerState.CLOSED:
            return
        self.stop()
        self._move(BrokerState.CLOSED)
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        if self._state is not BrokerState.RUNNING:
            try:
                self.start()
            except BaseException:
                self.close()  # no __exit__ follows a failed __enter__
                raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the work

    def _write_config(self) -> None:
        kraft = self.directory / "kraft"
        entries = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self._controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self._port},CONTROLLER://127.0.0.1:{self._controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self._port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(kraft),
            **_SINGLE_NODE_CONFIG,
            **self._config,
        }
        lines = [f"{key}={value}" for key, value in entries.items()]
        (self.directory / "server.properties").write_text("\n".join(lines) + "\n")
        (self.directory / "log4j2.xml").write_text(_LOG4J2_XML)

    def _java_command(self, java: str, lib_dir: Path, jvm: Sequence[str]) -> list[str]:
        return [
            java,
            *jvm,
            f"-Dlog4j2.configurationFile={self.directory / 'log4j2.xml'}",
            "-cp",
            str(lib_dir / "*"),
        ]

    def _format_storage(self, java: str, lib_dir: Path) -> None:
        if (self.directory / "kraft" / "meta.properties").is_file():
            return
        command = [
            *self._java_command(java, lib_dir, _TOOL_JVM),
            "kafka.tools.StorageTool",
            "format",
            # `--cluster-id=ID`, not `-t ID`: a base64url id may start with "-", which the
            # tool's argument parser would take for an option (1 start in 32 failed that way).
            f"--cluster-id={self.cluster_id}",
            "-c",
            str(self.directory / "server.properties"),
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"=== formatting storage, cluster id {self.cluster_id}\n".encode())
            log.flush()
            done = subprocess.run(
                command,
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=120,
            )
        if done.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.directory} failed (exit {done.returncode});"
                f" broker.log ends:\n{self._log_tail()}"
            )

    def _launch(self, java: str, lib_dir: Path) -> None:
        command = [
            *self._java_command(java, lib_dir, _BROKER_JVM),
            "kafka.Kafka",
            str(self.directory / "server.properties"),
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"=== starting broker on {self.bootstrap_servers}\n".encode())
            log.flush()
            # A process group of its own: the terminal's Ctrl-C reaches us, not the JVM,
            # and we stop the broker cleanly.
            self._process = subprocess.Popen(
                command,
                cwd=self.directory,
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
                if "Address already in use" in tail:
                    raise _PortTaken
                raise BrokerError(
                    f"Kafka broker exited with code {code} while starting; "
                    f"{self.log_path} ends:\n{tail}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = self._log_tail(log_start)
                raise BrokerError(
                    f"Kafka broker on {self.bootstrap_servers} did not answer within "
                    f"{self.startup_timeout:.0f}s; {self.log_path} ends:\n{tail}"
                )
            # A TCP probe is cheap, so poll with it; ask for metadata once the port is open.
            if _accepts(self._port) and broker_answers(self.bootstrap_servers, min(2.0, remaining)):
                return
            time.sleep(0.1)

    def _send(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

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
            return "(no broker.log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"


class _PortTaken(Exception):
    """The broker lost a race for one of its free-picked ports."""


# --- command line -------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def _run(data_dir: Path | None, port: int | None, timeout: float) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_interrupted)
    broker = LocalBroker(data_dir=data_dir, port=port, startup_timeout=timeout)
    try:
        broker.start()
        print(f"bootstrap: {broker.bootstrap_servers}", flush=True)
        print(
            f"broker ready in {broker.startup_seconds:.1f}s; directory {broker.directory};"
            " Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while broker.running:
            time.sleep(0.5)
        print(
            f"the broker exited on its own; {broker.log_path} ends:\n{broker._log_tail()}",
            file=sys.stderr,
        )
        return 1
    except _Interrupted:
        return 0
    except BrokerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        # A second signal while stopping kills the broker instead of waiting.
        def kill_now(signum: int, frame: FrameType | None) -> None:
            broker._send(signal.SIGKILL)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, kill_now)
        if broker.state is BrokerState.RUNNING:
            print("stopping the broker ...", file=sys.stderr, flush=True)
        broker.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m processor.testing.broker",
        description=f"Run a local single-node Kafka {KAFKA_VERSION} broker (KRaft).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start a broker; print its bootstrap; stop on Ctrl-C")
    run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the broker's data here, to start it again later "
        "(default: a temporary directory, removed on exit)",
    )
    run.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    run.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the broker to answer (default: 120)",
    )
    fetch = commands.add_parser("fetch", help="only download the broker's jars")
    fetch.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"jar directory (default: ${CACHE_ENV} or {default_cache_dir()})",
    )
    args = parser.parse_args(argv)
    if args.command == "fetch":
        try:
            print(fetch_broker(args.cache_dir))
        except BrokerError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    return _run(args.data_dir, args.port, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
