"""The base of the Java services the tests start on 127.0.0.1: the Kafka broker (`broker.py`) and
the schema registry (`schema_registry.py`). Each of those says only what is its own: what Maven
fetches, the JVM's command line, its configuration, how to tell that it answers.

What this module owns (fetching the jars, once, is `maven.py`'s):

- the process: `JavaService` starts the JVM in a session of its own (a terminal's Ctrl-C reaches
  us, not the JVM) with its output appended to a log file in the service's directory, waits until
  the service answers (or raises quoting the end of that log), moves to other free ports when it
  lost a race for one, stops it (SIGTERM, then SIGKILL), and kills at interpreter exit the ones
  left running.
- the command line: `CommandLine`, `python -m processor.testing.<service> run|fetch`.

A service's lifecycle; a service may allow fewer transitions (`JavaService.transitions`), and
anything not allowed raises the service's error:

```
CREATED --start()--> RUNNING --stop() / kill()--> STOPPED --start()--> RUNNING ...
CREATED, STOPPED --close()--> CLOSED            (close() on RUNNING stops first)
```

`stop()` and `kill()` on a service that is not running do nothing, so finalizers can call them
freely.
"""

from __future__ import annotations

import abc
import argparse
import atexit
import contextlib
import enum
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import ClassVar, Self

from processor.errors import ProcessorError
from processor.testing.maven import java_executable

__all__ = [
    "TRANSITIONS",
    "CommandLine",
    "JavaService",
    "ServiceState",
    "Transitions",
    "free_port",
    "port_accepts",
    "serve",
]

_LOG_TAIL_LINES = 40


# --- ports ----------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (someone may take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


# --- the service ----------------------------------------------------------------------------------


class ServiceState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    CLOSED = "closed"


Transitions = Mapping[ServiceState, frozenset[ServiceState]]

TRANSITIONS: Transitions = {
    ServiceState.CREATED: frozenset({ServiceState.RUNNING, ServiceState.CLOSED}),
    ServiceState.RUNNING: frozenset({ServiceState.STOPPED}),
    ServiceState.STOPPED: frozenset({ServiceState.RUNNING, ServiceState.CLOSED}),
    ServiceState.CLOSED: frozenset(),
}
"""The full lifecycle, drawn in the module docstring: a service that can start again."""

PortPolicy = Callable[[int, int], None]
"""What to do when a start lost its port, given the attempt (0, 1, ...) and where this attempt's
part of the log starts: raise to give up, return to launch again."""

# Services still running when the interpreter exits are killed rather than left behind (held
# strongly, so a running service that its owner dropped is still found here).
_LIVE: set[JavaService] = set()


@atexit.register
def _kill_leftovers() -> None:
    for service in list(_LIVE):
        service.kill()
        service.close()


class _PortTaken(Exception):
    """The service lost a race for one of its ports."""


class JavaService(abc.ABC):
    """One JVM serving on 127.0.0.1, in a directory it owns, with its log there.

    A service gives what it runs from (`_home`, fetched on first use), its command line
    (`_prepare_launch`), its readiness check (`_answers`) and, if it has them, ports beyond the
    main one (`_pick_ports`, `_listening_on`).
    """

    name: ClassVar[str]
    """What the service is called in messages: "Kafka broker"."""
    log_name: ClassVar[str]
    """The log file in the service's directory: the JVM's stdout and stderr, across starts."""
    address_label: ClassVar[str]
    """The label of the line `run` prints on stdout: `bootstrap: 127.0.0.1:PORT`."""
    error: ClassVar[type[ProcessorError]]
    """What the service raises."""
    transitions: ClassVar[Transitions] = TRANSITIONS
    port_taken_signs: ClassVar[tuple[str, ...]] = ("Address already in use",)
    """Text in the log of a JVM that exited because its port was taken."""
    poll_interval: ClassVar[float] = 0.1
    """Seconds between readiness checks while starting."""

    def __init__(
        self,
        *,
        directory: Path | None,
        temporary_prefix: str,
        port: int | None,
        startup_timeout: float,
        stop_timeout: float,
    ) -> None:
        self._owns_dir = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix=temporary_prefix))
            if directory is None
            else Path(directory).resolve()
        )
        """The service's directory: its log and whatever it keeps. A temporary one (when none is
        given) is removed on close()."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port
        self._port = port if port is not None else free_port()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._state = ServiceState.CREATED
        self.startup_seconds: float | None = None
        """How long the last successful start took."""

    # -- what a service gives

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where clients reach the service."""

    @abc.abstractmethod
    def _home(self) -> Path:
        """The directory the JVM runs from (jars, a distribution), fetched on first use."""

    @abc.abstractmethod
    def _prepare_launch(self, java: str, home: Path) -> list[str]:
        """Get ready to launch on the current ports (e.g. write the configuration); return the
        command line that runs the service. Called before each launch."""

    @abc.abstractmethod
    def _answers(self, timeout: float) -> bool:
        """Whether the service answers its clients, asked within `timeout` seconds."""

    def _pick_ports(self) -> None:
        """Move to other free ports, after losing a race for one."""
        self._port = free_port()

    def _listening_on(self) -> str:
        """The addresses the service listens on, for messages."""
        return f"127.0.0.1:{self._port}"

    def _java(self) -> str:
        return java_executable(self.error)

    # -- what callers read

    @property
    def state(self) -> ServiceState:
        return self._state

    @property
    def log_path(self) -> Path:
        return self.directory / self.log_name

    @property
    def running(self) -> bool:
        """Whether the process is alive (it may have died since start())."""
        return self._process is not None and self._process.poll() is None

    def log_tail(self, start: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the log from byte `start` on."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(start)
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return f"(no {self.log_name})"
        return "\n".join(text.splitlines()[-lines:]) or "(empty)"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address}, {self._state.value}, {self.directory})"

    # -- lifecycle

    def _move(self, target: ServiceState) -> None:
        if target not in self.transitions[self._state]:
            raise self.error(
                f"{self.name} at {self.directory} cannot go from {self._state.value} "
                f"to {target.value}"
            )
        self._state = target

    def start(self) -> Self:
        """Start the service and wait until it answers; return self.

        Raises the service's error (quoting the end of its log) if it exits or does not answer
        in time; the process is killed then, and the service stays in its previous state. A
        free-picked port lost to someone else is replaced by another, twice at most.
        """
        return self._start(self._other_ports)

    def stop(self) -> None:
        """Stop the service (SIGTERM), or SIGKILL it after `stop_timeout` seconds."""
        if self._state is not ServiceState.RUNNING:
            return
        self._end_process(grace=self.stop_timeout)
        self._move(ServiceState.STOPPED)

    def kill(self) -> None:
        """Kill the service at once (SIGKILL), as a crash would."""
        if self._state is not ServiceState.RUNNING:
            return
        self._end_process(grace=0)
        self._move(ServiceState.STOPPED)

    def close(self) -> None:
        """Stop the service if running; remove its directory if it was a temporary one."""
        if self._state is ServiceState.CLOSED:
            return
        self.stop()
        self._move(ServiceState.CLOSED)
        if self._owns_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Self:
        if self._state is not ServiceState.RUNNING:
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

    def _start(self, when_port_taken: PortPolicy) -> Self:
        if ServiceState.RUNNING not in self.transitions[self._state]:
            self._move(ServiceState.RUNNING)  # raises, naming the illegal transition
        began = time.monotonic()
        home, java = self._home(), self._java()
        for attempt in itertools.count():
            command = self._prepare_launch(java, home)
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                process = self._launch(command)
                self._await_ready(process, began + self.startup_timeout, log_start)
            except _PortTaken:
                self._end_process(grace=0)
                when_port_taken(attempt, log_start)
                continue
            except BaseException:
                self._end_process(grace=0)
                raise
            break
        self.startup_seconds = time.monotonic() - began
        self._move(ServiceState.RUNNING)
        _LIVE.add(self)
        return self

    def _other_ports(self, attempt: int, log_start: int) -> None:
        if self._fixed_port is not None or attempt == 2:
            raise self._address_in_use(log_start) from None
        self._pick_ports()

    def _address_in_use(self, log_start: int, within: str = "") -> ProcessorError:
        return self.error(
            f"{self.name} could not listen on {self._listening_on()}{within}: address in use; "
            f"{self.log_name} ends:\n{self.log_tail(log_start)}"
        )

    def _launch(self, command: Sequence[str]) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            log.write(f"=== starting {self.name} on {self.address}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self._process

    def _await_ready(
        self, process: subprocess.Popen[bytes], deadline: float, log_start: int
    ) -> None:
        while True:
            code = process.poll()
            if code is not None:
                tail = self.log_tail(log_start)
                if any(sign in tail for sign in self.port_taken_signs):
                    raise _PortTaken
                raise self.error(
                    f"{self.name} exited with code {code} while starting; "
                    f"{self.log_path} ends:\n{tail}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self.error(
                    f"{self.name} on {self.address} did not answer within "
                    f"{self.startup_timeout:.0f}s; {self.log_path} ends:\n"
                    f"{self.log_tail(log_start)}"
                )
            if self._answers(min(2.0, remaining)):
                return
            time.sleep(self.poll_interval)

    def _signal(self, signum: signal.Signals) -> None:
        """Send `signum` to the process's group, if the process is alive."""
        if self._process is None or self._process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def _end_process(self, *, grace: float) -> None:
        """SIGTERM and wait `grace` seconds (none: skip), then SIGKILL; reap; forget the process.

        The process stays known while it is waited for, so a signal handler can still kill it.
        """
        process = self._process
        if process is not None:
            if grace > 0:
                self._signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=grace)
            self._signal(signal.SIGKILL)
            process.wait()
        self._process = None
        _LIVE.discard(self)


# --- command line ---------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def serve(service: JavaService) -> int:
    """Start `service`, print `<address_label>: <address>` on stdout, and run until SIGINT or
    SIGTERM (exit status 0) or until the service exits on its own (1); close it."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _raise_interrupted)
    try:
        service.start()
        print(f"{service.address_label}: {service.address}", flush=True)
        print(
            f"{service.name} ready in {service.startup_seconds:.1f}s; "
            f"directory {service.directory}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while service.running:
            time.sleep(0.5)
        print(
            f"the {service.name} exited on its own; {service.log_path} ends:\n{service.log_tail()}",
            file=sys.stderr,
        )
        return 1
    except _Interrupted:
        return 0
    except service.error as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        # A second signal while stopping kills the service instead of waiting.
        def kill_now(signum: int, frame: FrameType | None) -> None:
            service._signal(signal.SIGKILL)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, kill_now)
        if service.state is ServiceState.RUNNING:
            print(f"stopping the {service.name} ...", file=sys.stderr, flush=True)
        service.close()


class CommandLine:
    """`python -m <module> run|fetch` for one service: `run` starts it, prints its address and
    runs until Ctrl-C (`serve()`); `fetch` only downloads it and prints where to.

    `run` takes `--port` and `--timeout`; a service adds its own options to `self.run`. `fetch`
    takes `fetch_flag` (a directory, `args.directory`).
    """

    def __init__(
        self,
        *,
        module: str,
        description: str,
        noun: str,
        prints: str,
        fetches: str,
        fetch_flag: str,
        fetch_default: str,
        default_timeout: float,
        error: type[ProcessorError],
    ) -> None:
        self.error = error
        self.parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
        commands = self.parser.add_subparsers(dest="command", required=True)
        self.run = commands.add_parser(
            "run", help=f"start a {noun}; print {prints}; stop on Ctrl-C"
        )
        self.run.add_argument("--port", type=int, default=None, help="port (default: a free one)")
        self.run.add_argument(
            "--timeout",
            type=float,
            default=default_timeout,
            help=f"seconds to wait for the {noun} to answer (default: {default_timeout:.0f})",
        )
        self.fetch = commands.add_parser("fetch", help=f"only download {fetches}")
        self.fetch.add_argument(
            fetch_flag,
            dest="directory",
            type=Path,
            default=None,
            help=f"where to put it (default: {fetch_default})",
        )

    def main(
        self,
        argv: Sequence[str] | None,
        *,
        service: Callable[[argparse.Namespace], JavaService],
        fetch: Callable[[Path | None], Path],
    ) -> int:
        """Parse `argv`; `run`: serve `service(args)`; `fetch`: print `fetch(args.directory)`."""
        args = self.parser.parse_args(argv)
        if args.command == "run":
            return serve(service(args))
        try:
            print(fetch(args.directory))
        except self.error as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
