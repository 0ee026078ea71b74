"""Fixtures shared by the database tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import Engine

from osfmilter import passwords
from osfmilter.cli import main
from osfmilter.storage import admin, users
from osfmilter.storage.domains import add_domain
from osfmilter.storage.store import SqlStore

# The CLI as a test calls it: (exit status, stdout, stderr).
Run = Callable[..., tuple[int, str, str]]

ALLOW_NON_GLOBAL = "[registration]\nallow_non_global = true\n"

REGISTERED_AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Argon2id at its least cost (8 KiB, one pass): still a valid {ARGON2ID} PHC string.

    These tests store and check passwords; Dovecot's parameters (64 MiB, three
    passes, 0.3 s a hash) are tested in tests/unit/test_passwords.py and
    against a real Dovecot in tests/integration, which keep them.
    """
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
    monkeypatch.setattr(passwords, "_HASHER", cheap)
    # The hash an unknown login is checked against is made once: not a cheap one for later tests.
    users._nobody.cache_clear()
    yield
    users._nobody.cache_clear()


@pytest.fixture
def acme(engine: Engine) -> SqlStore:
    """A store with one customer, acme (free plan), and its scanned domain example.com."""
    store = SqlStore(engine)
    with store.session() as s:
        admin.add_customer(s, "acme", "free", REGISTERED_AT)
        add_domain(s, "example.com", "acme", REGISTERED_AT)
    return store


@pytest.fixture
def run(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """``osfmilter ARGS...`` against the test database, in this process.

    The tests register documentation networks (192.0.2.0/24, 2001:db8::/32),
    so the config allows non-global ones unless ``config_text`` says otherwise.
    """
    config = tmp_path / "osfmilter.toml"
    # state_dir: nothing a command keeps (DKIM keys...) lands outside the test's directory.
    database = f'state_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n'
    config.write_text(f"{database}{ALLOW_NON_GLOBAL}")

    def run(*args: str, config_text: str = "") -> tuple[int, str, str]:
        # Settings for this call (and the ones after it) instead of the default.
        if config_text:
            config.write_text(f"{database}{config_text}")
        status = main(["--config", str(config), *args])
        out, err = capsys.readouterr()
        return status, out, err

    return run
