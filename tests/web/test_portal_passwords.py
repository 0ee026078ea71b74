"""A password change ends every portal session of the user."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from osfmilter import passwords
from osfmilter.cli import main
from osfmilter.storage import users
from osfmilter.storage.schema import User, WebSession
from tests.web.conftest import ACME_USER, Portal


def logged_out(browser: TestClient) -> bool:
    answer = browser.get("/servers")
    return answer.status_code == 303 and answer.headers["location"].startswith("/login")


def sessions_of(portal: Portal) -> int:
    with portal.store.session() as session:
        return session.scalar(select(func.count()).select_from(WebSession)) or 0


def test_user_passwd_on_the_command_line_logs_the_user_out(
    portal: Portal, acme: TestClient, db_url: str, tmp_path: Path
) -> None:
    other = portal.login(ACME_USER, "192.0.2.20")
    assert acme.get("/servers").status_code == 200
    config = tmp_path / "cli.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n')
    assert main(["--config", str(config), "user", "passwd", ACME_USER]) == 0
    assert sessions_of(portal) == 0
    assert logged_out(acme) and logged_out(other)


def test_set_user_password_ends_the_sessions(portal: Portal, acme: TestClient) -> None:
    portal.clock.moment += timedelta(minutes=5)
    with portal.store.session() as session:
        users.set_user_password(
            session, ACME_USER, passwords.hash_password("a new password here"), portal.clock.now()
        )
    assert logged_out(acme)


def test_a_session_older_than_the_password_opens_nothing(portal: Portal, acme: TestClient) -> None:
    # The backstop: the row survived (an older version, a change made by hand).
    later = portal.clock.now() + timedelta(seconds=1)
    with portal.store.session() as session:
        session.execute(update(User).values(password_changed_at=later))
    portal.clock.moment = later + timedelta(seconds=1)
    assert sessions_of(portal) == 1
    assert logged_out(acme)
