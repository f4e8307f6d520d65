"""The tests' PostgreSQL server: a database per test, and data that survives a clean restart
and a SIGKILL (committed transactions come back, the port stays the same)."""

from __future__ import annotations

import psycopg
import pytest

from processor.testing.postgres import (
    BIN_ENV,
    LocalPostgres,
    PostgresServerError,
    find_postgres_bin,
)


def test_each_test_gets_an_empty_database_of_its_own(postgres: LocalPostgres, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        database = conn.execute("SELECT current_database()").fetchone()
    assert tables == (0,)
    assert database is not None and database[0] != "postgres"
    assert pg_dsn.startswith(f"postgresql://postgres@127.0.0.1:{postgres.port}/")


@pytest.mark.parametrize("fault", ["restart", "kill"])
def test_committed_rows_survive_a_restart_and_a_kill(
    postgres: LocalPostgres, pg_dsn: str, fault: str
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE t (n int)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
    open_conn = psycopg.connect(pg_dsn)
    port = postgres.port
    if fault == "restart":
        postgres.restart()
    else:
        postgres.kill()
    with pytest.raises(psycopg.OperationalError):
        open_conn.execute("SELECT 1")
    open_conn.close()
    assert postgres.running and postgres.port == port
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*), sum(n) FROM t").fetchone() == (100, 5050)


def test_a_stopped_server_refuses_connections_until_started_again(
    postgres: LocalPostgres, pg_dsn: str
) -> None:
    postgres.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg_dsn, connect_timeout=2)
        with pytest.raises(PostgresServerError, match="stopped"):
            postgres.create_database("nope")
    finally:
        postgres.start()
    psycopg.connect(pg_dsn).close()


def test_missing_binaries_say_to_run_scripts_setup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv(BIN_ENV, str(tmp_path))
    with pytest.raises(PostgresServerError, match="run scripts/setup"):
        find_postgres_bin()
