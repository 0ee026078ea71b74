"""``osfmilter user`` and ``token``: secrets printed once, only hashes stored, tokens that
authenticate until revoked."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from osfmilter import passwords, tokens
from osfmilter.storage import users
from osfmilter.storage.schema import ApiToken, User
from osfmilter.storage.store import SqlStore
from tests.db.conftest import REGISTERED_AT, Run

PASSWORD = re.compile(r"^password: (\S+)$", re.MULTILINE)
TOKEN = re.compile(r"^token: (\S+)$", re.MULTILINE)


def stored_user(engine: Engine, email: str) -> tuple[str, int | None, bool]:
    with SqlStore(engine).session() as session:
        row = session.execute(
            select(User.password_hash, User.customer_id, User.is_operator).where(
                User.email == email
            )
        ).one()
        return row[0], row[1], row[2]


def stdin(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(value))


def one_line_error(status: int, err: str, message: str) -> None:
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_user_add_prints_a_generated_password_once_and_stores_only_its_hash(
    run: Run, engine: Engine
) -> None:
    run("customer", "add", "acme")
    status, out, err = run("user", "add", " Bob@ACME.example ", "--customer", "acme")
    assert status == 0, err
    assert "user bob@acme.example added (customer acme)" in out
    [password] = PASSWORD.findall(out)
    assert re.fullmatch(r"[a-z2-7]{32}", password)
    assert "cannot be shown again" in out
    stored, customer_id, is_operator = stored_user(engine, "bob@acme.example")
    assert customer_id is not None and not is_operator
    assert password not in stored and passwords.verify(stored, password)
    listed = run("user", "list")[1]
    assert "bob@acme.example" in listed and "acme" in listed
    assert password not in listed and "argon2" not in listed.lower()


def test_an_operator_has_no_customer(run: Run, engine: Engine) -> None:
    status, out, err = run("user", "add", "ops@relay.example", "--operator")
    assert status == 0, err
    assert PASSWORD.findall(out)
    _, customer_id, is_operator = stored_user(engine, "ops@relay.example")
    assert customer_id is None and is_operator
    assert "(operator)" in run("user", "list")[1]


def test_user_add_takes_a_password_from_stdin_and_prints_none(
    run: Run, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("customer", "add", "acme")
    stdin(monkeypatch, "a long enough secret\n")
    status, out, err = run(
        "user", "add", "bob@acme.example", "--customer", "acme", "--password-stdin"
    )
    assert status == 0, err
    assert "password:" not in out and "a long enough secret" not in out
    assert passwords.verify(stored_user(engine, "bob@acme.example")[0], "a long enough secret")


def test_a_short_password_on_stdin_adds_nobody(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    stdin(monkeypatch, "short\n")
    status, _, err = run("user", "add", "ops@relay.example", "--operator", "--password-stdin")
    one_line_error(status, err, "too short: at least 12 characters")
    assert "ops@relay.example" not in run("user", "list")[1]


def test_passwd_replaces_the_password_at_once(
    run: Run, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    [old] = PASSWORD.findall(run("user", "add", "ops@relay.example", "--operator")[1])
    status, out, err = run("user", "passwd", "OPS@relay.example")
    assert status == 0, err
    [new] = PASSWORD.findall(out)
    assert new != old and "old one no longer works" in out
    stored = stored_user(engine, "ops@relay.example")[0]
    assert passwords.verify(stored, new) and not passwords.verify(stored, old)

    stdin(monkeypatch, "the operator's own choice\n")
    status, out, err = run("user", "passwd", "ops@relay.example", "--password-stdin")
    assert status == 0 and "password:" not in out, err
    assert passwords.verify(
        stored_user(engine, "ops@relay.example")[0], "the operator's own choice"
    )


def test_an_unknown_customer_is_one_line(run: Run) -> None:
    for command in (("user", "add", "bob@acme.example"), ("token", "create")):
        status, _, err = run(*command, "--customer", "nobody")
        one_line_error(status, err, "no customer named 'nobody'")
    assert run("token", "list")[1].count("\n") == 1


def test_owner_arguments_are_one_line_usage_errors(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    for args, message in [
        (("--customer", "acme", "--operator"), "not allowed with argument"),
        ((), "one of the arguments --customer --operator is required"),
    ]:
        for command in (("user", "add", "bob@acme.example"), ("token", "create")):
            with pytest.raises(SystemExit) as exited:
                run(*command, *args)
            err = capsys.readouterr().err
            assert exited.value.code == 2
            assert message in err and len(err.strip().splitlines()) == 1, err


def test_duplicate_and_invalid_addresses_are_one_line(run: Run) -> None:
    run("customer", "add", "acme")
    run("user", "add", "bob@acme.example", "--customer", "acme")
    status, _, err = run("user", "add", "BOB@acme.example", "--operator")
    one_line_error(status, err, "user 'bob@acme.example' already exists")
    for bad in ("bob", "bob@", "@acme.example", "bob@@acme.example", "b ob@acme.example"):
        status, _, err = run("user", "add", bad, "--customer", "acme")
        one_line_error(status, err, "is not a valid e-mail address")
    status, _, err = run("user", "passwd", "nobody@acme.example")
    one_line_error(status, err, "no user 'nobody@acme.example'")
    status, _, err = run("user", "remove", "nobody@acme.example")
    one_line_error(status, err, "no user 'nobody@acme.example'")


def test_user_list_and_remove(run: Run) -> None:
    run("customer", "add", "acme")
    run("customer", "add", "beta")
    run("user", "add", "bob@acme.example", "--customer", "acme")
    run("user", "add", "eve@beta.example", "--customer", "beta")
    run("user", "add", "ops@relay.example", "--operator")
    listed = run("user", "list", "--customer", "acme")[1]
    assert "bob@acme.example" in listed and "eve@" not in listed and "ops@" not in listed
    assert "never" in listed  # not logged in yet
    status, out, err = run("user", "remove", "Bob@Acme.example")
    assert status == 0 and "user bob@acme.example removed" in out, err
    assert "bob@" not in run("user", "list")[1]


def test_check_login_accepts_the_password_and_marks_the_login(run: Run, engine: Engine) -> None:
    run("customer", "add", "acme")
    [password] = PASSWORD.findall(run("user", "add", "bob@acme.example", "--customer", "acme")[1])
    with SqlStore(engine).session() as session:
        assert (
            users.check_login(session, "bob@acme.example", "wrong password!", REGISTERED_AT) is None
        )
        assert users.check_login(session, "nobody@acme.example", password, REGISTERED_AT) is None
        assert users.check_login(session, "not an address", password, REGISTERED_AT) is None
        user = users.check_login(session, " BOB@acme.example", password, REGISTERED_AT)
        assert user is not None and user.email == "bob@acme.example"
    listed = run("user", "list")[1]
    assert "2026-11-29T12:00:00" in listed


def test_a_customer_with_users_or_live_tokens_is_not_removed(run: Run) -> None:
    run("customer", "add", "acme")
    run("user", "add", "bob@acme.example", "--customer", "acme")
    run("token", "create", "--customer", "acme")
    status, _, err = run("customer", "remove", "acme")
    one_line_error(status, err, "still has 1 portal user(s), 1 API token(s)")
    run("user", "remove", "bob@acme.example")
    run("token", "revoke", "1")
    # A revoked token grants nothing: it goes with the customer.
    status, _, err = run("customer", "remove", "acme")
    assert status == 0, err
    assert run("token", "list")[1].count("\n") == 1  # the header only


def test_token_create_prints_a_token_once_that_authenticates_until_revoked(
    run: Run, engine: Engine
) -> None:
    run("customer", "add", "acme")
    status, out, err = run("token", "create", "--customer", "acme", "--name", "deploy script")
    assert status == 0, err
    [token] = TOKEN.findall(out)
    assert re.fullmatch(r"osf_[a-z2-7]{8}_[a-z2-7]{32}", token)
    assert "cannot be shown again" in out
    prefix = token.split("_")[1]
    store = SqlStore(engine)
    with store.session() as session:
        row = session.scalars(select(ApiToken)).one()
        assert row.prefix == prefix and token not in row.token_hash
        assert row.name == "deploy script" and row.created_by == "cli"
        assert row.last_used_at is None
        customer_id = row.customer_id
        principal = tokens.authenticate(session, token, REGISTERED_AT)
        assert principal is not None and principal.customer_id == customer_id
        assert not principal.is_operator
    with store.session() as session:
        assert session.scalars(select(ApiToken.last_used_at)).one() == REGISTERED_AT

    listed = run("token", "list")[1]
    assert f"osf_{prefix}" in listed and "deploy script" in listed and "acme" in listed
    assert token not in listed and token.split("_")[2] not in listed
    with store.session() as session:
        assert session.scalars(select(ApiToken.token_hash)).one() not in listed

    status, out, err = run("token", "revoke", f"osf_{prefix}")
    assert status == 0 and "revoked" in out, err
    with store.session() as session:
        assert tokens.authenticate(session, token, REGISTERED_AT) is None


def test_a_wrong_secret_with_the_right_prefix_does_not_authenticate(
    run: Run, engine: Engine
) -> None:
    [token] = TOKEN.findall(run("token", "create", "--operator")[1])
    head, secret = token.rsplit("_", 1)
    other = "a" * 32 if secret != "a" * 32 else "b" * 32
    with SqlStore(engine).session() as session:
        assert tokens.authenticate(session, f"{head}_{other}", REGISTERED_AT) is None
        assert tokens.authenticate(session, tokens.generate().token, REGISTERED_AT) is None
        assert tokens.authenticate(session, "Bearer " + token, REGISTERED_AT) is None
        assert tokens.authenticate(session, "", REGISTERED_AT) is None
        principal = tokens.authenticate(session, token, REGISTERED_AT)
        assert principal is not None and principal.is_operator
        assert session.scalars(select(ApiToken.last_used_at)).one() == REGISTERED_AT
        # Used again within the minute: not written again.
        tokens.authenticate(session, token, REGISTERED_AT + timedelta(seconds=30))
        assert session.scalars(select(ApiToken.last_used_at)).one() == REGISTERED_AT
        tokens.authenticate(session, token, REGISTERED_AT + timedelta(minutes=2))
        assert session.scalars(select(ApiToken.last_used_at)).one() == REGISTERED_AT + timedelta(
            minutes=2
        )


def test_token_list_filters_by_customer_and_never_shows_a_secret(run: Run, engine: Engine) -> None:
    run("customer", "add", "acme")
    run("customer", "add", "beta")
    made = [
        TOKEN.findall(run("token", "create", *args)[1])[0]
        for args in (("--customer", "acme"), ("--customer", "beta"), ("--operator", "--by", "ann"))
    ]
    with SqlStore(engine).session() as session:
        hashes = session.scalars(select(ApiToken.token_hash)).all()
    everything = run("token", "list")[1]
    assert "(operator)" in everything and "ann" in everything
    for token in made:
        assert token.split("_")[2] not in everything
    for stored in hashes:
        assert stored not in everything
    acme = run("token", "list", "--customer", "acme")[1]
    assert made[0][:12] in acme and made[1][:12] not in acme and made[2][:12] not in acme


def test_token_revoke_takes_an_id_or_prefix_and_never_echoes_what_it_was_given(run: Run) -> None:
    [token] = TOKEN.findall(run("token", "create", "--operator")[1])
    status, _, err = run("token", "revoke", "99")
    one_line_error(status, err, "no such API token")
    unknown = tokens.generate().token
    status, _, err = run("token", "revoke", unknown)
    one_line_error(status, err, "no such API token")
    assert unknown not in err
    status, out, err = run("token", "revoke", "1")
    assert status == 0 and token[:12] in out, err
    # Again: still revoked, the first time kept.
    first = run("token", "list")[1]
    assert run("token", "revoke", token.split("_")[1])[0] == 0
    assert run("token", "list")[1] == first


def test_token_names_are_one_line(run: Run) -> None:
    status, _, err = run("token", "create", "--operator", "--name", "two\nlines")
    one_line_error(status, err, "one line of printable characters")
    status, _, err = run("token", "create", "--operator", "--name", "x" * 101)
    one_line_error(status, err, "too long: at most 100 characters")
    status, _, err = run("token", "create", "--operator", "--by", " ")
    one_line_error(status, err, "must not be empty")


def test_the_database_keeps_owners_apart(engine: Engine, acme: SqlStore) -> None:
    """A row with a customer and the operator flag, or neither, is refused by the check."""
    for customer_id, is_operator in ((1, True), (None, False)):
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (email, customer_id, is_operator, password_hash,"
                    " created_at, password_changed_at)"
                    " VALUES ('x@y.example', :c, :o, 'h', :t, :t)"
                ),
                {"c": customer_id, "o": is_operator, "t": REGISTERED_AT.replace(tzinfo=None)},
            )


def test_users_and_tokens_raise_no_registry_version(engine: Engine) -> None:
    """The milter does not read them: a change must not make it reload the registry."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            names = connection.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            assert not [n for n in names if n.startswith(("users", "api_tokens"))]
    else:
        with engine.connect() as connection:
            tables = connection.execute(
                text("SELECT DISTINCT event_object_table FROM information_schema.triggers")
            ).scalars()
            assert not {"users", "api_tokens"} & set(tables)
    assert {"users", "api_tokens"} <= set(inspect(engine).get_table_names())
