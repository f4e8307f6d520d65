"""A real single-node Kafka broker for tests and local runs: one JVM, KRaft, broker and controller.

    with LocalBroker() as broker:
        run_against(broker.bootstrap_servers)   # "127.0.0.1:PORT"

From a shell: `python -m processor.testing.broker run [--data-dir DIR] [--port N]` prints
`bootstrap: 127.0.0.1:PORT` and runs until SIGINT or SIGTERM; `... fetch` only downloads the jars.

The jars come from Maven Central through `mvn` (see `broker-pom.xml`) into a cache directory,
once; the broker runs with the `java` on PATH (17 or newer).

A broker's lifecycle (anything else raises `BrokerError`; the process handling is
`processor.testing.java_service`'s, shared with the schema registry):

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

import base64
import hashlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from processor.errors import BrokerError
from processor.kafka.admin_probe import broker_answers
from processor.testing.java_service import (
    CommandLine,
    JavaService,
    ServiceState,
    free_port,
    port_accepts,
)
from processor.testing.maven import Maven, default_cache, fetch_once

__all__ = ["KAFKA_VERSION", "BrokerState", "LocalBroker", "default_cache_dir", "fetch_broker"]

KAFKA_VERSION = "4.1.1"
"""The Kafka version `broker-pom.xml` names."""

CACHE_ENV = "PROCESSOR_KAFKA_CACHE"
"""Environment variable naming the jar directory, overriding `default_cache_dir()`."""

BrokerState = ServiceState
"""A broker's lifecycle states, drawn in the module docstring."""

_POM = Path(__file__).with_name("broker-pom.xml")
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
    # Topics keep their records unless they set a retention of their own (window changelogs
    # do): tests and demos write event times from any epoch, and the default seven days of
    # retention, measured on record timestamps, deleted input and output of a test whose
    # timestamps were in 1970 from under its readers when the retention check ran mid-test.
    "log.retention.ms": "-1",
}


# --- fetching the jars ------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The jar directory: `$PROCESSOR_KAFKA_CACHE` if set, else `<root>/.cache/kafka-VERSION/lib`.

    `<root>` is this repository when running from a checkout, else the working directory.
    """
    return default_cache(CACHE_ENV, f"kafka-{KAFKA_VERSION}/lib")


def fetch_broker(cache_dir: Path | None = None) -> Path:
    """Download the broker's jars into `cache_dir` (default `default_cache_dir()`); return it.

    Does nothing when an earlier fetch of the same pom completed there. Concurrent callers
    (pytest-xdist workers) wait for one another. Raises `BrokerError` when `mvn` or `java`
    is missing or Maven fails.
    """
    digest = hashlib.sha256(_POM.read_bytes()).hexdigest()
    return fetch_once(
        cache_dir if cache_dir is not None else default_cache_dir(),
        what=f"Kafka {KAFKA_VERSION} jars",
        marker=f"kafka {KAFKA_VERSION} pom sha256 {digest}",
        error=BrokerError,
        populate=_copy_jars,
    )


def _copy_jars(maven: Maven, lib_dir: Path) -> str:
    # Maven gets a scratch copy of the pom, so an installed package's directory stays clean.
    pom = maven.scratch / "pom.xml"
    shutil.copyfile(_POM, pom)
    maven.run(
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib_dir}",
        "-DincludeScope=runtime",
    )
    return f"{len(list(lib_dir.glob('*.jar')))} jars"


# --- the broker ---------------------------------------------------------------------------------


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")


class LocalBroker(JavaService):
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

    name = "Kafka broker"
    log_name = "broker.log"
    address_label = "bootstrap"
    error = BrokerError

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
        super().__init__(
            directory=data_dir,
            temporary_prefix="processor-kafka-",
            port=port,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self._controller_port = free_port()
        self._lib_dir = lib_dir
        self._config = dict(config or {})

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def address(self) -> str:
        return self.bootstrap_servers

    @property
    def cluster_id(self) -> str:
        """The KRaft cluster id, kept in the directory; made on first use."""
        path = self.directory / "cluster-id"
        if not path.is_file():
            path.write_text(_new_cluster_id() + "\n")
        return path.read_text().strip()

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
        began = time.monotonic()

        def wait_for_the_same_ports(attempt: int, log_start: int) -> None:
            if time.monotonic() - began >= port_timeout:
                raise self._address_in_use(log_start, f" within {port_timeout:.0f}s") from None
            time.sleep(0.5)

        return self._start(wait_for_the_same_ports)

    # -- what the base asks of a service

    def _home(self) -> Path:
        return self._lib_dir if self._lib_dir is not None else fetch_broker()

    def _pick_ports(self) -> None:
        super()._pick_ports()
        self._controller_port = free_port()

    def _listening_on(self) -> str:
        return f"127.0.0.1:{self._port} or :{self._controller_port}"

    def _prepare_launch(self, java: str, home: Path) -> list[str]:
        self._write_config()
        self._format_storage(java, home)
        return [
            *self._java_command(java, home, _BROKER_JVM),
            "kafka.Kafka",
            str(self.directory / "server.properties"),
        ]

    def _answers(self, timeout: float) -> bool:
        # A TCP probe is cheap, so poll with it; ask for metadata once the port is open.
        return port_accepts(self._port) and broker_answers(self.bootstrap_servers, timeout)

    # -- the broker's own work

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
                f" broker.log ends:\n{self.log_tail()}"
            )


# --- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    cli = CommandLine(
        module="processor.testing.broker",
        description=f"Run a local single-node Kafka {KAFKA_VERSION} broker (KRaft).",
        noun="broker",
        prints="its bootstrap",
        fetches="the broker's jars",
        fetch_flag="--cache-dir",
        fetch_default=f"${CACHE_ENV} or {default_cache_dir()}",
        default_timeout=120.0,
        error=BrokerError,
    )
    cli.run.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the broker's data here, to start it again later "
        "(default: a temporary directory, removed on exit)",
    )
    return cli.main(
        argv,
        service=lambda args: LocalBroker(
            data_dir=args.data_dir, port=args.port, startup_timeout=args.timeout
        ),
        fetch=fetch_broker,
    )


if __name__ == "__main__":
    sys.exit(main())
