"""Shared test fixtures.

Database fixtures (real PostgreSQL, no mocks):

- ``pg_url`` (session): the server under test. ``CHAINTRADE_DB_URL`` when set, else a
  pip-shipped PostgreSQL started in a temporary folder for the session.
- ``empty_db`` (function): a fresh, uniquely named database on that server, dropped after
  the test; yields its URL.
- ``clean_db`` (function): ``empty_db`` with all migrations applied.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaintrade.db import connect, embedded_postgres, migrate, with_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of the PostgreSQL server used by integration tests."""
    url = os.environ.get("CHAINTRADE_DB_URL")
    if url:
        yield url
        return
    # Outside pytest's numbered tmp dirs, which concurrent pytest sessions prune.
    root = Path(tempfile.mkdtemp(prefix="chaintrade-test-pg-"))
    try:
        with embedded_postgres(root / "data") as embedded_url:
            yield embedded_url
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def empty_db(pg_url: str) -> Iterator[str]:
    """A new empty database on ``pg_url``'s server, dropped after the test."""
    name = f"ct_test_{uuid.uuid4().hex[:12]}"
    with connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_url, name)
    finally:
        with connect(pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clean_db(empty_db: str) -> str:
    """A new database with every migration applied."""
    migrate(empty_db)
    return empty_db
