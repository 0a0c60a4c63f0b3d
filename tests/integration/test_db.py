"""Database plumbing against a real PostgreSQL: migrations, connections, embedded server."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from chaintrade.chain import ChainEvent
from chaintrade.chain_store import count_events, write_events
from chaintrade.db import (
    MIGRATIONS_DIR,
    MigrationError,
    applied_migrations,
    connect,
    database_url,
    migrate,
    timescaledb_available,
    timescaledb_enabled,
)
from chaintrade.errors import RetryableError, ServiceUnavailable
from chaintrade.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

EXPECTED_VERSIONS = sorted(p.name[:3] for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))


def _tables(url: str) -> set[str]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def _events(n: int) -> list[ChainEvent]:
    chain = uuid.uuid4()
    now = datetime.now(UTC)
    return [
        ChainEvent(chain, uuid.uuid4(), "collector", "complete", now, duration_ms=0.25)
        for _ in range(n)
    ]


def test_migrations_apply_once_and_second_run_applies_nothing(empty_db: str) -> None:
    assert migrate(empty_db) == EXPECTED_VERSIONS
    assert migrate(empty_db) == []
    assert applied_migrations(empty_db) == EXPECTED_VERSIONS
    assert {"chain_definitions", "chain_history", "chain_metrics", "market_data"} <= _tables(
        empty_db
    )


def test_migrations_folder_is_found_relative_to_the_repo() -> None:
    assert PROJECT_ROOT / "infra" / "migrations" == MIGRATIONS_DIR
    assert sorted(p.name[:3] for p in MIGRATIONS_DIR.glob("*.sql")) == EXPECTED_VERSIONS


def test_changed_applied_migration_is_refused(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(empty_db, folder)
    (folder / "999_extra.sql").write_text("CREATE TABLE extra (id int);\n")
    edited = folder / "002_market_data.sql"
    edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")

    with pytest.raises(MigrationError, match=r"002_market_data\.sql changed"):
        migrate(empty_db, folder)
    assert "extra" not in _tables(empty_db)  # nothing applied after the refusal


def test_crlf_checkout_of_an_applied_migration_is_not_a_change(
    empty_db: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    migrate(empty_db, folder)
    path = folder / "001_chain_tables.sql"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert migrate(empty_db, folder) == []


def test_failing_migration_rolls_back_and_is_not_recorded(empty_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_ok.sql").write_text("CREATE TABLE ok_table (id int);\n")
    (folder / "002_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
    )
    with pytest.raises(MigrationError, match=r"002_broken\.sql failed"):
        migrate(empty_db, folder)
    assert applied_migrations(empty_db) == ["001"]
    assert "half_done" not in _tables(empty_db)


def test_concurrent_migrations_apply_each_version_once(empty_db: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrate(empty_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(v for r in results for v in r) == EXPECTED_VERSIONS


def test_unreachable_server_raises_retryable_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable, match=r"127\.0\.0\.1:1/nowhere") as info:
        connect("postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout_s=2)
    assert isinstance(info.value, RetryableError)
    assert "CHAINTRADE_DB_URL" in str(info.value)


def test_plain_postgresql_path_without_timescaledb(clean_db: str) -> None:
    with connect(clean_db) as conn:
        if timescaledb_available(conn):
            pytest.skip("this server has TimescaleDB; the plain path is tested elsewhere")
        assert not timescaledb_enabled(conn)


def test_url_works_from_another_process(clean_db: str) -> None:
    script = textwrap.dedent(
        """
        import sys
        from chaintrade.db import connect
        with connect(sys.argv[1]) as conn:
            print(conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, clean_db], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(EXPECTED_VERSIONS))


def test_database_url_uses_the_configured_url_without_starting_a_server(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db_url="postgresql://someone@db.example:5433/trading")
    with database_url(settings) as url:
        assert url == "postgresql://someone@db.example:5433/trading"
    assert not (tmp_path / "postgres").exists()


def _postmaster_pid(datadir: Path) -> int | None:
    pidfile = datadir / "postmaster.pid"
    return int(pidfile.read_text().splitlines()[0]) if pidfile.exists() else None


def test_embedded_server_starts_migrates_writes_and_stops(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", db_url=None)
    with database_url(settings) as url:
        assert "host=" in url  # the Unix socket of the embedded server
        assert migrate(url) == EXPECTED_VERSIONS
        with connect(url) as conn:
            assert write_events(conn, _events(25)) == 25
        pid = _postmaster_pid(settings.postgres_dir)
        assert pid is not None and psutil.pid_exists(pid)
    assert _postmaster_pid(settings.postgres_dir) is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

    with database_url(settings) as url:  # the data survives a restart
        assert migrate(url) == []
        assert count_events(url) == 25
    assert _postmaster_pid(settings.postgres_dir) is None


def test_server_left_running_by_a_crashed_run_is_adopted_then_stopped(tmp_path: Path) -> None:
    datadir = tmp_path / "pgdata"
    crash = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from chaintrade.db import embedded_postgres
        cm = embedded_postgres(Path(sys.argv[1]))
        print(cm.__enter__(), flush=True)
        os._exit(0)  # no cleanup: the server keeps running
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", crash, str(datadir)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    stale_pid = _postmaster_pid(datadir)
    assert stale_pid is not None and psutil.pid_exists(stale_pid)

    from chaintrade.db import embedded_postgres

    with embedded_postgres(datadir) as url, connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert _postmaster_pid(datadir) is None
