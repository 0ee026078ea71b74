"""Shared fixtures: databases on both backends, and CI's no-skip rule."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from osfmilter.config import Config
from osfmilter.storage.db import make_engine
from tests.harness.database import reset_database, scratch_database

# PostgreSQL runs on this kind of machine at 127.0.0.1:5432 with trust auth.
PG_ADMIN_URL = os.environ.get(
    "OSFMILTER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: a missing dependency must fail loudly."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("OSFMILTER_NO_SKIP") and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"FAILED: {skipped} test(s) skipped; CI allows none")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL database of this test run's own, dropped at the end."""
    with scratch_database(PG_ADMIN_URL, "osf_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database file migrated once, that db_url copies for each test."""
    path = tmp_path_factory.mktemp("sqlite-migrated") / "osfmilter.sqlite3"
    engine = make_engine(f"sqlite:///{path}", Config().database.timeout)
    reset_database(engine)
    engine.dispose()
    # Closed, the database is that one file: its write-ahead log is checkpointed and gone.
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database URL, once per backend."""
    if request.param == "sqlite":
        # A copy of a migrated file is what a migration makes (0.7 s each, else).
        path = tmp_path / "osfmilter.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_migrated"), path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("pg_server_url")
    engine = make_engine(url, Config().database.timeout)
    reset_database(engine)
    engine.dispose()
    yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, Config().database.timeout)
    yield engine
    engine.dispose()
