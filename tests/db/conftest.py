"""Fixtures shared by the database tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from osfmilter.cli import main
from osfmilter.storage import admin
from osfmilter.storage.store import SqlStore

# The CLI as a test calls it: (exit status, stdout, stderr).
Run = Callable[..., tuple[int, str, str]]

REGISTERED_AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def acme(engine: Engine) -> SqlStore:
    """A store with one customer, acme (free plan), and its scanned domain example.com."""
    store = SqlStore(engine)
    with store.session() as s:
        admin.add_customer(s, "acme", "free", REGISTERED_AT)
        admin.add_domain(s, "example.com", "acme", REGISTERED_AT)
    return store


@pytest.fixture
def run(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """``osfmilter ARGS...`` against the test database, in this process."""
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')

    def run(*args: str, config_text: str = "") -> tuple[int, str, str]:
        if config_text:  # more settings for this call (and the ones after it)
            config.write_text(f'[database]\nurl = "{db_url}"\n{config_text}')
        status = main(["--config", str(config), *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run
