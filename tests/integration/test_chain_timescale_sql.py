"""The TimescaleDB branches of the migrations, checked as far as plain PostgreSQL allows.

No TimescaleDB here, so migrations 003/004 take their plain-PostgreSQL branch and the
Timescale one never runs. What this checks: PostgreSQL's PL/pgSQL validator parses every
*static* statement of each ``DO`` block, both branches (``CREATE EXTENSION``,
``PERFORM create_hypertable(...)``, ``ALTER TABLE ... SET (timescaledb.compress ...)``,
the policy calls), with the server's own parser, when the body is created as a function
(``check_function_bodies``). A deliberately broken statement in the Timescale branch
must fail, so the check does reach it. The continuous aggregates that 004 builds at run
time with ``EXECUTE format(...)`` are rendered by PostgreSQL from the migration's own
format call and parsed the same way.

Parsing is all: names are not resolved. What stays untested without the extension:
that TimescaleDB accepts the functions' arguments and the ``timescaledb.*`` options, and
what hypertables, compression, retention and the aggregate policies then do.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from chaintrade.db import MIGRATIONS_DIR, connect, timescaledb_available

pytestmark = pytest.mark.integration

_DO_BLOCK = re.compile(r"^DO \$\$\n(.*?)\n\$\$;", re.S | re.M)


def timescale_blocks() -> list[tuple[str, str]]:
    """(migration, DO-block body) for every block that has a TimescaleDB branch."""
    out = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        for body in _DO_BLOCK.findall(path.read_text()):
            if "timescaledb" in body:
                out.append((path.name, body))
    return out


def validate(conn: psycopg.Connection[object], body: str) -> None:
    """Create (never run) the block as a function: the validator parses its statements."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL check_function_bodies = on")
        conn.execute(
            "CREATE FUNCTION pg_temp.timescale_branch_check() RETURNS void "
            "LANGUAGE plpgsql AS $check$" + body + "$check$"
        )


def test_every_timescale_branch_parses_with_postgresqls_own_parser(clean_db: str) -> None:
    blocks = timescale_blocks()
    assert {"003_timescale.sql", "004_chain_tracing.sql"} <= {name for name, _ in blocks}
    with connect(clean_db) as conn:
        assert not timescaledb_available(conn), "TimescaleDB is here: test it for real"
        for _name, body in blocks:
            validate(conn, body)


@pytest.mark.parametrize(
    ("migration", "statement", "broken"),
    [
        ("003_timescale.sql", "create_hypertable('chain_history'", "create_hypertable('x' 'y'"),
        ("004_chain_tracing.sql", "ALTER TABLE chain_history SET (", "ALTER TABLE x SETT ("),
        (
            "004_chain_tracing.sql",
            "add_retention_policy('chain_metrics'",
            "add_retention_policy(('x'",
        ),
    ],
)
def test_a_syntax_error_in_the_timescale_branch_is_caught(
    clean_db: str, migration: str, statement: str, broken: str
) -> None:
    body = next(b for name, b in timescale_blocks() if name == migration and statement in b)
    with connect(clean_db) as conn, pytest.raises(psycopg.errors.SyntaxError):
        validate(conn, body.replace(statement, broken, 1))


def _call_at(text: str, start: int) -> str:
    """The call starting at ``text[start]`` (``format(...)``), skipping quoted strings."""
    depth, quoted = 0, False
    for i in range(start, len(text)):
        c = text[i]
        if c == "'":
            quoted = not quoted  # '' inside a string toggles twice
        elif not quoted and c == "(":
            depth += 1
        elif not quoted and c == ")":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    raise ValueError("unbalanced call")


def rendered_continuous_aggregates(conn: psycopg.Connection[object]) -> list[str]:
    """The statements 004 EXECUTEs on TimescaleDB, rendered by PostgreSQL from the
    migration's own ``format(...)`` call and ``specs`` array (the loop, not the DDL)."""
    body = next(b for name, b in timescale_blocks() if name == "004_chain_tracing.sql")
    declare = body[body.index("DECLARE") : body.index("\nBEGIN")]
    calls = [
        _call_at(body, m.end() - len("format("))
        for m in re.finditer(r"EXECUTE format\(", body)
        if "timescaledb.continuous" in _call_at(body, m.end() - len("format("))
    ]
    assert len(calls) == 1
    with conn.transaction(force_rollback=True):
        conn.execute(
            "CREATE FUNCTION pg_temp.render_caggs() RETURNS SETOF text LANGUAGE plpgsql AS "
            f"$r${declare}\nBEGIN\n    FOREACH spec SLICE 1 IN ARRAY specs LOOP\n"
            f"        RETURN NEXT {calls[0]};\n    END LOOP;\nEND$r$"
        )
        return [r[0] for r in conn.execute("SELECT * FROM pg_temp.render_caggs()").fetchall()]


def test_the_continuous_aggregates_004_would_create_parse(clean_db: str) -> None:
    with connect(clean_db) as conn:
        statements = rendered_continuous_aggregates(conn)
        assert [s.split()[3] for s in statements] == [
            f"chain_service_stats_{p}" for p in ("1m", "5m", "15m", "1h", "1d")
        ]
        assert "time_bucket('1 minute'::interval" in statements[0]
        for statement in statements:
            validate(conn, f"BEGIN\n{statement};\nEND")
        with pytest.raises(psycopg.errors.SyntaxError):
            validate(conn, f"BEGIN\n{statements[0].replace('GROUP BY', 'GROUP BYE')};\nEND")
