"""The portal under parallel requests: the throttle cannot be raced, SQLite's lock is no 503."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from osfmilter import passwords
from osfmilter.web import create_app
from osfmilter.web.portal import csrf, sessions
from tests.web.conftest import ACME_USER, PASSWORD, FixedClock, Portal, web_config

ADDR = "198.51.100.50"
TOKEN = "a-login-form-token"  # noqa: S105 ( the double-submit cookie only has to match the form)


@pytest.fixture
def one_loop(portal: Portal) -> Iterator[TestClient]:
    """A client whose requests all run on one event loop, as under uvicorn, in parallel."""
    with TestClient(portal.app, client=(ADDR, 50000), follow_redirects=False) as client:
        yield client


def guess(client: TestClient, email: str, password: str) -> int:
    answer = client.post(
        "/login",
        data={"email": email, "password": password, csrf.FIELD: TOKEN},
        headers={"Cookie": f"{csrf.LOGIN_COOKIE}={TOKEN}"},
    )
    return answer.status_code


def in_parallel(client: TestClient, attempts: list[tuple[str, str]]) -> list[int]:
    with ThreadPoolExecutor(len(attempts)) as pool:
        return list(pool.map(lambda attempt: guess(client, *attempt), attempts))


def test_parallel_guesses_cannot_all_slip_under_the_throttle(
    portal: Portal, one_loop: TestClient
) -> None:
    portal.add_user(ACME_USER, "acme")
    for _ in range(4):
        assert guess(one_loop, ACME_USER, "wrong password") == 401
    answers = in_parallel(one_loop, [(ACME_USER, f"guess {n}") for n in range(8)])
    assert sorted(answers) == [401] + [429] * 7, answers


@pytest.mark.parametrize("round_", range(3))
def test_the_right_password_among_wrong_ones_logs_in(
    portal: Portal, one_loop: TestClient, round_: int
) -> None:
    portal.add_user(ACME_USER, "acme")
    attempts = [(ACME_USER, PASSWORD)] + [(f"guess{n}@acme.example", "x") for n in range(4)]
    answers = in_parallel(one_loop, attempts)
    assert answers == [303, 401, 401, 401, 401]


def test_parallel_page_loads_on_one_session_all_load(portal: Portal, one_loop: TestClient) -> None:
    portal.add_user(ACME_USER, "acme")
    assert guess(one_loop, ACME_USER, PASSWORD) == 303
    for _ in range(3):
        # Every load finds last_seen_at due a write.
        portal.clock.moment += sessions.SEEN_RESOLUTION * 2
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: one_loop.get("/").status_code, range(10)))
        assert answers == [200] * 10


@pytest.mark.parametrize("limit", [1, 2])
def test_password_checks_run_at_most_password_checks_at_once(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    running, most = 0, 0
    lock = threading.Lock()
    real = passwords.verify

    def verify(password_hash: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            time.sleep(0.1)
            return real(password_hash, password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(passwords, "verify", verify)
    app = create_app(web_config(db_url, tmp_path, web={"password_checks": limit}), FixedClock())
    with TestClient(app, client=(ADDR, 50000), follow_redirects=False) as client:
        answers = in_parallel(client, [(f"guess{n}@acme.example", "x") for n in range(5)])
    assert answers == [401] * 5
    assert most == limit
