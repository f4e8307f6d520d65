"""A real, throwaway PostgreSQL server for tests and local runs.

    with LocalPostgres() as server:
        dsn = server.create_database("orders")   # "postgresql://postgres@127.0.0.1:PORT/orders"

From a shell: `python -m processor.testing.postgres` prints `dsn: postgresql://...` and runs
until SIGINT or SIGTERM.

It runs Debian's `postgresql` binaries (`/usr/lib/postgresql/<version>/bin`, the newest
version found, or `$PROCESSOR_POSTGRES_BIN`); `scripts/setup` installs them. PostgreSQL refuses
to run as root, so when we are root the server runs as the system user `processor-pg` (created
with `useradd --system` if missing) and its directory belongs to that user. The server is ours
alone: it listens on 127.0.0.1 on a free port with `trust` authentication, its socket in its own
directory, and it is made fast rather than safe (fsync off: a machine crash loses it, a killed
server does not).

A server's lifecycle (anything else raises `PostgresServerError`):

```
CREATED --start()--> RUNNING --stop()--> STOPPED --start()--> RUNNING ...
CREATED, STOPPED --close()--> CLOSED            (close() on RUNNING stops first)
RUNNING --restart()--> RUNNING                  (a clean shutdown, then a start on the same port)
RUNNING --kill()--> RUNNING                     (SIGKILL, then a start: crash recovery)
RUNNING --kill(start_again=False)--> STOPPED
```

A server's directory holds everything it owns (removed by `close()` when we created it):

```
data/        the cluster (initdb): tables, WAL, postgresql.conf
socket/      the unix socket
server.log   the server's stdout and stderr, appended across starts
```
"""

from __future__ import annotations

import contextlib
import enum
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from processor.errors import ProcessorError
from processor.testing.java_service import free_port

__all__ = ["LocalPostgres", "PostgresServerError", "find_postgres_bin"]

BIN_ENV = "PROCESSOR_POSTGRES_BIN"
"""Environment variable naming the directory holding `initdb` and `postgres`."""

SERVER_USER = "processor-pg"
"""The unprivileged system user the server runs as when we are root."""

SUPERUSER = "postgres"
"""The server's superuser role: DSNs connect as it (trust authentication, no password)."""

_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # A test server keeps nothing worth a disk flush: a killed server still recovers from its WAL
    # (the OS has it); only a machine crash would lose it. synchronous_commit stays on: a commit
    # is written to the OS before it is acknowledged, so a SIGKILL loses no acknowledged commit
    # (fault tests rely on that, as users rely on it from a real server).
    "fsync": "off",
    "full_page_writes": "off",
    # Tests open a connection or two per writer; 100 leaves room for a suite's worth.
    "max_connections": "100",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}
# How long a start or a stop may take before we give up (a shared, busy machine is slow).
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0


class PostgresServerError(ProcessorError):
    """A local PostgreSQL server cannot be found, started or stopped (says what to do)."""


class ServerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    STOPPED = "stopped"
    CLOSED = "closed"


def find_postgres_bin() -> Path:
    """The directory holding `initdb` and `postgres`: `$PROCESSOR_POSTGRES_BIN`, or Debian's
    newest `/usr/lib/postgresql/<version>/bin`."""
    configured = os.environ.get(BIN_ENV)
    candidates = [Path(configured)] if configured else _debian_bins()
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    where = configured or "/usr/lib/postgresql/*/bin"
    raise PostgresServerError(
        f"PostgreSQL's initdb and postgres are not in {where}: run scripts/setup (it installs "
        f"Debian's postgresql package) or set ${BIN_ENV} to the directory that holds them"
    )


def _debian_bins() -> list[Path]:
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    return sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)


def _server_user() -> str | None:
    """Who the server runs as: `processor-pg` when we are root (created if missing), else us."""
    if os.geteuid() != 0:
        return None
    if not _user_exists(SERVER_USER):
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", SERVER_USER],
            capture_output=True,
            check=False,
        )
        # Another process may have created it meanwhile: only a user still missing is an error.
        if result.returncode != 0 and not _user_exists(SERVER_USER):
            raise PostgresServerError(
                f"PostgreSQL refuses to run as root and `useradd --system {SERVER_USER}` failed: "
                f"{result.stderr.decode(errors='replace').strip()}; create that user, or run the "
                "tests as an unprivileged user"
            )
    return SERVER_USER


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class LocalPostgres:
    """One PostgreSQL server in a directory of its own; see the module docstring."""

    def __init__(self, directory: Path | None = None, *, port: int | None = None) -> None:
        self._bin = find_postgres_bin()
        self._owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="processor-pg-"))
        self.port = port or free_port()
        self._user = _server_user()
        self._process: subprocess.Popen[bytes] | None = None
        self._state = ServerState.CREATED

    # --- addresses

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, database: str = "postgres") -> str:
        """A `postgresql://` DSN for `database` on this server, as its superuser."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` (an empty copy of template1); its DSN."""
        self._require(ServerState.RUNNING, "create a database")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    @property
    def running(self) -> bool:
        return self._state is ServerState.RUNNING

    # --- lifecycle

    def start(self) -> LocalPostgres:
        """Start the server (initdb on the first start); returns when it accepts connections."""
        if self._state not in (ServerState.CREATED, ServerState.STOPPED):
            raise PostgresServerError(
                f"cannot start the PostgreSQL server in {self.directory}: it is {self._state.value}"
            )
        if not (self._data / "PG_VERSION").exists():
            self._initdb()
        log = (self.directory / "server.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [str(self._bin / "postgres"), "-D", str(self._data)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                user=self._user,
                start_new_session=True,
            )
        finally:
            log.close()
        self._state = ServerState.RUNNING
        self._wait_until_ready()
        return self

    def stop(self) -> None:
        """Shut the server down cleanly (clients are disconnected); nothing if not running."""
        if self._state is not ServerState.RUNNING:
            return
        process = self._running_process()
        process.send_signal(signal.SIGINT)  # "fast" shutdown: roll back, disconnect, checkpoint
        try:
            process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._kill_processes()
        self._process = None
        self._state = ServerState.STOPPED

    def kill(self, *, start_again: bool = True) -> None:
        """SIGKILL the server and every backend, as a crash would, then (unless told not to)
        start it again on the same directory and port: it recovers from its WAL."""
        self._require(ServerState.RUNNING, "kill")
        self._kill_processes()
        self._process = None
        self._state = ServerState.STOPPED
        if start_again:
            self.start()

    def restart(self) -> None:
        """A clean shutdown, then a start on the same directory and port."""
        self._require(ServerState.RUNNING, "restart")
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its directory if we created it."""
        if self._state is ServerState.CLOSED:
            return
        self.stop()
        self._state = ServerState.CLOSED
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        if self._state is ServerState.CREATED:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- helpers

    @property
    def _data(self) -> Path:
        return self.directory / "data"

    def _require(self, state: ServerState, action: str) -> None:
        if self._state is not state:
            raise PostgresServerError(
                f"cannot {action}: the PostgreSQL server in {self.directory} is "
                f"{self._state.value}, not {state.value}"
            )

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise PostgresServerError(f"no PostgreSQL process for {self.directory}")
        return self._process

    def _initdb(self) -> None:
        socket_dir = self.directory / "socket"
        socket_dir.mkdir(exist_ok=True)
        if self._user is not None:
            for path in (self.directory, socket_dir):
                shutil.chown(path, self._user, self._user)
        result = subprocess.run(
            [
                str(self._bin / "initdb"),
                "-D",
                str(self._data),
                f"--username={SUPERUSER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            capture_output=True,
            cwd=self.directory,
            user=self._user,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresServerError(
                f"initdb failed in {self._data} (exit {result.returncode}): "
                f"{result.stderr.decode(errors='replace').strip()[-2000:]}"
            )
        settings = {
            **_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{socket_dir}'",
        }
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write("\n# processor.testing.postgres\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _wait_until_ready(self) -> None:
        process = self._running_process()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if process.poll() is not None:
                    self._process = None
                    self._state = ServerState.STOPPED
                    raise PostgresServerError(
                        f"PostgreSQL in {self.directory} exited with {process.returncode} while "
                        f"starting: {self._log_tail()}"
                    ) from None
                if time.monotonic() > deadline:
                    self._kill_processes()
                    raise PostgresServerError(
                        f"PostgreSQL in {self.directory} did not accept connections on port "
                        f"{self.port} within {_START_TIMEOUT_S:.0f}s: {self._log_tail()}"
                    ) from None
                time.sleep(0.02)

    def _kill_processes(self) -> None:
        """SIGKILL the postmaster and its backends; return when none is left holding memory."""
        process = self._running_process()
        # Backends outlive a killed postmaster for a moment, attached to its shared memory, and a
        # new postmaster refuses to start while they are: they are killed and awaited too.
        backends = _children(process.pid)
        for pid in [process.pid, *backends]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while any(_alive(pid) for pid in backends) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._state = ServerState.STOPPED

    def _log_tail(self) -> str:
        try:
            return (self.directory / "server.log").read_text(errors="replace")[-2000:].strip()
        except OSError:
            return "(no server.log)"


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` still runs (a zombie has let go of everything: it does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Run a server until SIGINT or SIGTERM, printing its DSN."""
    with LocalPostgres() as server:
        print(f"dsn: {server.dsn()}", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
