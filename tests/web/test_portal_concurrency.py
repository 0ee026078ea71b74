"""The portal under parallel requests: the throttle cannot be raced, SQLite's lock is no 503."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from osfmilter.web.portal import csrf
from tests.web.conftest import ACME_USER, Portal

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
