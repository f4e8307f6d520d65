"""A real PostgreSQL for the source tests: one server per session, a fresh database per test.

# replaced by processor.testing.postgres when merged

PostgreSQL refuses to run as root, so the server runs as the system user `processor-pg`
(created if missing) from a data directory in a temporary directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

PG_USER = "processor-pg"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: install Debian's "
            "`postgresql` package (scripts/setup does)"
        )
    return Path(found[-1]).parent


def _as_pg_user(*args: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *args]
    return list(args)


def _ensure_user() -> None:
    if os.geteuid() != 0:
        return
    known = subprocess.run(["id", "-u", PG_USER], capture_output=True, check=False)
    if known.returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    data_dir: Path
    port: int
    _databases: int = field(default=0)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _pg_ctl(self, *args: str) -> None:
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", *args]
        subprocess.run(_as_pg_user(*cmd), check=True, capture_output=True)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("-l", str(self.data_dir / "server.log"), "-o", options, "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def new_database(self) -> str:
        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    _ensure_user()
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="processor-pg-"))
    data_dir = root / "data"
    data_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER)
        shutil.chown(data_dir, PG_USER)
    subprocess.run(
        _as_pg_user(str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust"),
        check=True,
        capture_output=True,
    )
    server = PostgresServer(bin_dir, data_dir, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """A DSN to a fresh, empty database on the session's server."""
    return postgres_server.new_database()
