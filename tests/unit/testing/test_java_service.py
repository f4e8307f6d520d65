"""The base of the local Java services (`processor.testing.java_service`, `.maven`), run with a
small Python process in place of a JVM: it listens on its port, or fails the ways a JVM does."""

from __future__ import annotations

import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from processor.errors import ProcessorError
from processor.testing.java_service import JavaService, ServiceState, port_accepts
from processor.testing.maven import MARKER, Maven, fetch_once

# Modes: "serve" listens; "crash" exits at once; "mute" never listens; "stubborn" listens and
# ignores SIGTERM. A taken port makes it say what a JVM says and exit.
FAKE_SERVER = """
import signal, socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "crash":
    print("boom: bad config", flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode != "mute":
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        print("java.net.BindException: Address already in use", flush=True)
        sys.exit(1)
    sock.listen()
while True:
    time.sleep(1)
"""


class FakeError(ProcessorError):
    pass


class FakeService(JavaService):
    name = "fake service"
    log_name = "fake.log"
    address_label = "at"
    error = FakeError
    poll_interval = 0.02

    def __init__(
        self,
        *,
        mode: str = "serve",
        port: int | None = None,
        lost_port: int | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            directory=None,
            temporary_prefix="processor-fake-",
            port=port,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self.mode = mode
        if lost_port is not None:
            self._port = lost_port  # as if someone took the free-picked port meanwhile

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def _java(self) -> str:
        return sys.executable

    def _home(self) -> Path:
        return self.directory

    def _prepare_launch(self, java: str, home: Path) -> list[str]:
        return [java, "-c", FAKE_SERVER, str(self._port), self.mode]

    def _answers(self, timeout: float) -> bool:
        return port_accepts(self._port, timeout)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port someone else holds: bound, so no one else can bind it, but not accepting, so a
    readiness probe on it does not answer for the service."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_starts_stops_starts_again_and_closes() -> None:
    with FakeService() as service:
        assert service.state is ServiceState.RUNNING
        assert service.running and port_accepts(service.port)
        assert service.startup_seconds is not None
        service.stop()
        assert service.state is ServiceState.STOPPED and not service.running
        service.start()
        assert service.running
        assert service.log_tail().count("=== starting fake service on") == 2
    assert service.state is ServiceState.CLOSED
    assert not service.directory.exists(), "a temporary directory goes on close"


def test_an_illegal_transition_raises_the_services_error() -> None:
    with FakeService() as service, pytest.raises(FakeError, match="from running to running"):
        service.start()
    with pytest.raises(FakeError, match="from closed to running"):
        service.start()


def test_a_service_that_exits_while_starting_quotes_its_log() -> None:
    service = FakeService(mode="crash")
    with pytest.raises(FakeError, match=r"exited with code 3 while starting(.|\n)*boom: bad"):
        service.start()
    assert service.state is ServiceState.CREATED and not service.running
    service.close()


def test_a_service_that_does_not_answer_in_time_is_killed() -> None:
    service = FakeService(mode="mute", startup_timeout=0.5)
    with pytest.raises(FakeError, match="did not answer within 0s"), service:
        pass
    assert not service.running and service.state is ServiceState.CLOSED


def test_a_lost_free_port_is_replaced(held_port: int) -> None:
    with FakeService(lost_port=held_port) as service:
        assert service.port != held_port and port_accepts(service.port)
        assert "Address already in use" in service.log_tail()


def test_a_taken_fixed_port_raises(held_port: int) -> None:
    with pytest.raises(FakeError, match=f"could not listen on 127.0.0.1:{held_port}: address"):
        FakeService(port=held_port).__enter__()


def test_stop_kills_what_ignores_sigterm() -> None:
    with FakeService(mode="stubborn", stop_timeout=0.3) as service:
        began = time.monotonic()
        service.stop()
        assert time.monotonic() - began < 5 and not service.running


def test_kill_and_stop_on_a_service_not_running_do_nothing() -> None:
    with FakeService() as service:
        service.kill()
        assert service.state is ServiceState.STOPPED and not service.running
        service.kill()
        service.stop()
        assert service.state is ServiceState.STOPPED


# --- fetching with Maven


def _fake_tools(directory: Path, mvn_script: str) -> str:
    """A PATH holding a `java` and an `mvn` that run `mvn_script`."""
    directory.mkdir()
    for name, body in (("java", "exit 0"), ("mvn", mvn_script)):
        tool = directory / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return str(directory)


def test_fetch_once_populates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _fake_tools(tmp_path / "bin", 'echo "$@" > args'))
    calls: list[list[str]] = []

    def populate(maven: Maven, target: Path) -> str:
        maven.run("copy", f"-DoutputDirectory={target}")
        calls.append((maven.scratch / "args").read_text().split())
        (target / "thing.jar").write_text("jar")
        return "1 jar"

    target = tmp_path / "cache"
    for _ in range(2):
        assert fetch_once(target, what="things", marker="v1", error=FakeError, populate=populate)
    assert calls == [["-q", "-B", "copy", f"-DoutputDirectory={target.resolve()}"]]
    assert (target / MARKER).read_text() == "v1\n"

    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # a done fetch needs no tools
    assert fetch_once(target, what="things", marker="v1", error=FakeError, populate=populate)
    with pytest.raises(FakeError, match="`java` is not on PATH"):
        fetch_once(target, what="things", marker="v2", error=FakeError, populate=populate)


def test_a_failed_maven_run_quotes_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _fake_tools(tmp_path / "bin", "echo 'Could not resolve'; exit 7"))

    def populate(maven: Maven, target: Path) -> str:
        maven.run("copy")
        return "nothing"

    target = tmp_path / "cache"
    with pytest.raises(FakeError, match=r"fetching things failed(.|\n)*Could not resolve"):
        fetch_once(target, what="things", marker="v1", error=FakeError, populate=populate)
    assert not (target / MARKER).exists()
