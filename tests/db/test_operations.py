"""osfmilter.web.operations: each change with its audit entry, in one transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from osfmilter import passwords, tokens
from osfmilter.config import RegistrationSection
from osfmilter.errors import ConflictError, InvalidInput
from osfmilter.storage import admin
from osfmilter.storage.audit import Actor, entries
from osfmilter.storage.schema import ApiToken, AuditEntry, SaslAccount, SmtpServer
from osfmilter.storage.store import SqlStore
from osfmilter.web import operations
from tests.db.conftest import Run

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PORTAL = Actor("ann@acme.example", "portal", "198.51.100.9")
# Rules as lax as an operator may set them: a customer still gets none of it.
LAX = RegistrationSection(allow_non_global=True, min_prefix_ipv4=8)


@pytest.fixture
def store(engine: Engine) -> SqlStore:
    store = SqlStore(engine)
    with store.session() as session:
        admin.add_customer(session, "acme", "free", NOW)
        admin.add_customer(session, "globex", "paid", NOW)
    return store


def audit(store: SqlStore) -> list[tuple[str, str, str, str, str, str]]:
    with store.session() as session:
        return [
            (e.actor, e.via, e.remote_addr, e.customer, e.action, e.target)
            for e in reversed(entries(session))
        ]


def test_a_server_added_and_removed_is_audited_with_who_and_where(store: SqlStore) -> None:
    with store.session(locked=True) as session:
        acme = admin.get_customer(session, "acme")
        operations.add_server(
            session, PORTAL, acme, "81.2.69.7", "shop", LAX, NOW, by_operator=False
        )
    with store.session() as session:
        server = session.scalars(select(SmtpServer)).one()
        operations.remove_server(session, PORTAL, server, NOW)
    assert audit(store) == [
        ("ann@acme.example", "portal", "198.51.100.9", "acme", "server.add", "81.2.69.7/32"),
        ("ann@acme.example", "portal", "198.51.100.9", "acme", "server.remove", "81.2.69.7/32"),
    ]


def test_a_customer_never_registers_a_non_global_network_whatever_the_rules(
    store: SqlStore,
) -> None:
    with store.session(locked=True) as session:
        acme = admin.get_customer(session, "acme")
        with pytest.raises(InvalidInput, match="private"):
            operations.add_server(
                session, PORTAL, acme, "10.1.2.3", None, LAX, NOW, by_operator=False
            )
        # The operator may, where the rules allow it.
        operations.add_server(session, PORTAL, acme, "10.1.2.3", None, LAX, NOW, by_operator=True)


def test_a_refused_change_leaves_no_audit_entry(store: SqlStore) -> None:
    with store.session(locked=True) as session:
        globex = admin.get_customer(session, "globex")
        operations.add_server(
            session, PORTAL, globex, "81.2.70.0/24", None, LAX, NOW, by_operator=True
        )
    with pytest.raises(ConflictError) as refused, store.session(locked=True) as session:
        acme = admin.get_customer(session, "acme")
        operations.add_server(session, PORTAL, acme, "81.2.70.9", None, LAX, NOW, by_operator=False)
    assert "globex" not in refused.value.public
    assert [row[4] for row in audit(store)] == ["server.add"]


def test_a_sasl_login_taken_by_another_customer_is_a_conflict_naming_no_one(
    store: SqlStore,
) -> None:
    _, hashed = operations.new_password()
    with store.session() as session:
        globex = admin.get_customer(session, "globex")
        operations.add_sasl_account(session, PORTAL, globex, "shop@example.com", hashed, NOW)
    with pytest.raises(ConflictError) as taken, store.session() as session:
        acme = admin.get_customer(session, "acme")
        operations.add_sasl_account(session, PORTAL, acme, "Shop@example.com", hashed, NOW)
    assert taken.value.public == "SASL login 'Shop@example.com' is already registered"
    with pytest.raises(InvalidInput, match="not a valid SASL login"), store.session() as session:
        acme = admin.get_customer(session, "acme")
        operations.add_sasl_account(session, PORTAL, acme, "two words", hashed, NOW)


def test_a_sasl_password_is_replaced_and_audited_without_the_secret(store: SqlStore) -> None:
    first, first_hash = operations.new_password()
    second, second_hash = operations.new_password()
    assert passwords.verify(first_hash, first) and first != second
    with store.session() as session:
        acme = admin.get_customer(session, "acme")
        operations.add_sasl_account(session, PORTAL, acme, "app@acme.example", first_hash, NOW)
    with store.session() as session:
        account = session.scalars(select(SaslAccount)).one()
        operations.set_sasl_password(session, PORTAL, account, second_hash, NOW)
    with store.session() as session:
        account = session.scalars(select(SaslAccount)).one()
        assert passwords.verify(account.password_hash or "", second)
        operations.remove_sasl_account(session, PORTAL, account, NOW)
        texts = [f"{e.target} {e.detail}" for e in session.scalars(select(AuditEntry))]
    assert [row[4] for row in audit(store)] == ["sasl.add", "sasl.passwd", "sasl.remove"]
    assert not any(first in text or second in text for text in texts)


def test_a_token_is_shown_once_stored_as_a_hash_and_revoked_once(store: SqlStore) -> None:
    with store.session() as session:
        acme = admin.get_customer(session, "acme")
        token, secret = operations.create_token(session, PORTAL, acme, "deploy", NOW)
        token_id = token.id
    with store.session() as session:
        assert tokens.authenticate(session, secret, NOW) is not None
        row = session.get(ApiToken, token_id)
        assert row is not None and row.created_by == "ann@acme.example"
        operations.revoke_token(session, PORTAL, row, NOW)
        operations.revoke_token(session, PORTAL, row, NOW)
    with store.session() as session:
        assert tokens.authenticate(session, secret, NOW) is None
    logged = audit(store)
    assert [row[4] for row in logged] == ["token.create", "token.revoke"]
    assert all(secret not in row[5] for row in logged)


def test_another_customers_objects_are_invisible_and_the_operator_sees_all(
    store: SqlStore,
) -> None:
    _, hashed = operations.new_password()
    with store.session(locked=True) as session:
        acme, globex = admin.get_customer(session, "acme"), admin.get_customer(session, "globex")
        server = operations.add_server(
            session, PORTAL, globex, "81.2.70.0/24", None, LAX, NOW, by_operator=False
        )
        account = operations.add_sasl_account(
            session, PORTAL, globex, "g@globex.example", hashed, NOW
        )
        token, _ = operations.create_token(session, PORTAL, globex, "", NOW)
        operator_token, _ = operations.create_token(session, PORTAL, None, "", NOW)
        session.flush()
        for visible, object_id in (
            (operations.visible_server, server.id),
            (operations.visible_sasl_account, account.id),
            (operations.visible_token, token.id),
        ):
            assert visible(session, acme.id, object_id) is None
            assert visible(session, globex.id, object_id) is not None
            assert visible(session, None, object_id) is not None
            assert visible(session, globex.id, object_id + 1000) is None
        assert operations.visible_token(session, globex.id, operator_token.id) is None


def test_the_operator_reads_the_audit_log_on_the_command_line(store: SqlStore, run: Run) -> None:
    with store.session(locked=True) as session:
        acme, globex = admin.get_customer(session, "acme"), admin.get_customer(session, "globex")
        operations.add_server(session, PORTAL, acme, "81.2.69.7", None, LAX, NOW, by_operator=False)
        operations.add_server(
            session, PORTAL, globex, "81.2.70.0/24", None, LAX, NOW, by_operator=False
        )
    status, out, err = run("report", "audit", "--customer", "acme")
    assert status == 0, err
    header, row = out.splitlines()
    assert header.split() == [
        "at",
        "actor",
        "via",
        "address",
        "customer",
        "action",
        "target",
        "detail",
    ]
    assert row.split() == [
        "2026-12-01T12:00:00+00:00",
        "ann@acme.example",
        "portal",
        "198.51.100.9",
        "acme",
        "server.add",
        "81.2.69.7/32",
        "-",
    ]
    status, out, _ = run("report", "audit", "--json", "--limit", "1")
    assert status == 0
    [newest] = json.loads(out)["entries"]
    assert newest["customer"] == "globex" and newest["detail"] == ""
