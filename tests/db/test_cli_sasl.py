"""``osfmilter sasl``: a password printed once, only its hash stored, replaced at once."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import Engine, select

from osfmilter import passwords
from osfmilter.storage import admin
from osfmilter.storage.schema import SaslAccount
from osfmilter.storage.store import SqlStore
from tests.db.conftest import REGISTERED_AT, Run

PRINTED = re.compile(r"^password: (\S+)$", re.MULTILINE)


def stored_hash(engine: Engine, login: str) -> str | None:
    with SqlStore(engine).session() as session:
        return session.scalars(
            select(SaslAccount.password_hash).where(SaslAccount.login == login)
        ).one()


def stdin(monkeypatch: pytest.MonkeyPatch, text: str | bytes) -> None:
    """Standard input as a pipe gives it: bytes underneath."""
    raw = text if isinstance(text, bytes) else text.encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))


def test_add_prints_a_generated_password_once_and_stores_only_its_hash(
    run: Run, engine: Engine
) -> None:
    run("customer", "add", "acme")
    status, out, err = run("sasl", "add", "shop@acme.example", "--customer", "acme")
    assert status == 0, err
    [password] = PRINTED.findall(out)
    assert re.fullmatch(r"[a-z2-7]{32}", password)
    assert "cannot be shown again" in out
    stored = stored_hash(engine, "shop@acme.example")
    assert stored is not None and password not in stored
    assert passwords.verify(stored, password)
    listed = run("sasl", "list")[1]
    assert password not in listed and "$argon2id" not in listed and "ARGON2ID" not in listed


def test_add_takes_a_password_from_stdin_and_prints_none(
    run: Run, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("customer", "add", "acme")
    stdin(monkeypatch, "a long enough secret\n")
    status, out, err = run("sasl", "add", "shop", "--customer", "acme", "--password-stdin")
    assert status == 0, err
    assert "password:" not in out and "a long enough secret" not in out
    stored = stored_hash(engine, "shop")
    assert stored is not None and passwords.verify(stored, "a long enough secret")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("short\n", "too short: at least 12 characters"),
        ("", "no password on standard input"),
        ("\n", "no password on standard input"),
        ("two lines of it\nsecond line\n", "line breaks"),
        ("x" * 5000, "longer than 4096"),
        (b"\xff\xfenot utf-8 at all\n", "is not UTF-8 text"),
    ],
)
def test_a_bad_password_on_stdin_is_one_line_and_registers_nothing(
    run: Run, engine: Engine, monkeypatch: pytest.MonkeyPatch, given: str | bytes, message: str
) -> None:
    run("customer", "add", "acme")
    stdin(monkeypatch, given)
    status, _, err = run("sasl", "add", "shop", "--customer", "acme", "--password-stdin")
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "shop" not in run("sasl", "list")[1]


def test_passwd_replaces_the_password_at_once(
    run: Run, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("customer", "add", "acme")
    [old] = PRINTED.findall(run("sasl", "add", "shop", "--customer", "acme")[1])
    status, out, err = run("sasl", "passwd", "shop")
    assert status == 0, err
    [new] = PRINTED.findall(out)
    assert new != old and "old one no longer works" in out
    stored = stored_hash(engine, "shop")
    assert stored is not None
    assert passwords.verify(stored, new) and not passwords.verify(stored, old)

    stdin(monkeypatch, "the customer's own choice\n")
    status, out, err = run("sasl", "passwd", " shop ", "--password-stdin")
    assert status == 0 and "password:" not in out, err
    stored = stored_hash(engine, "shop")
    assert stored is not None and passwords.verify(stored, "the customer's own choice")


def test_passwd_of_an_unknown_login_is_one_line(run: Run) -> None:
    run("customer", "add", "acme")
    status, _, err = run("sasl", "passwd", "nobody")
    assert status == 2 and "SASL login 'nobody' is not registered" in err


def test_an_account_without_a_password_is_listed_as_unable_to_log_in(
    run: Run, acme: SqlStore
) -> None:
    with acme.session() as session:
        admin.add_sasl(session, "legacy", "acme", REGISTERED_AT)
    run("sasl", "add", "shop", "--customer", "acme")
    out = run("sasl", "list")[1]
    legacy = next(line for line in out.splitlines() if line.startswith("legacy"))
    shop = next(line for line in out.splitlines() if line.startswith("shop"))
    assert "none: cannot log in" in legacy
    assert "none" not in shop and re.search(r"\d{4}-\d\d-\d\dT", shop)


def test_a_closed_stdin_is_one_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    run("customer", "add", "acme")
    monkeypatch.setattr("sys.stdin", None)
    status, _, err = run("sasl", "add", "shop", "--customer", "acme", "--password-stdin")
    assert status == 2 and "no password on standard input: it is closed" in err


def test_a_login_that_differs_only_in_case_is_refused(run: Run) -> None:
    run("customer", "add", "acme")
    run("customer", "add", "beta")
    assert run("sasl", "add", "Shop@acme.example", "--customer", "acme")[0] == 0
    status, _, err = run("sasl", "add", "shop@ACME.example", "--customer", "beta")
    assert status == 2
    assert "'shop@ACME.example' is already registered as 'Shop@acme.example' to 'acme'" in err


def test_passwd_names_the_login_as_stored(run: Run) -> None:
    run("customer", "add", "acme")
    run("sasl", "add", "shop", "--customer", "acme")
    assert run("sasl", "passwd", "  shop ")[1].startswith("SASL login shop: password replaced")
