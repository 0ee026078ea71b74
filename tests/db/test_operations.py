"""osfmilter.web.operations: each change with its audit entry, in one transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from osfmilter import passwords, tokens
from osfmilter.config import Config, RegistrationSection
from osfmilter.errors import ConflictError, InvalidInput
from osfmilter.model import IdentityKind
from osfmilter.reputation import OperatorActionKind, Rules
from osfmilter.storage import admin
from osfmilter.storage.audit import Actor, entries
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.schema import (
    ApiToken,
    AuditEntry,
    Customer,
    DkimKey,
    SaslAccount,
    ScannedDomain,
    SmtpServer,
)
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


class Clock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


def reputation(store: SqlStore) -> ReputationStore:
    return ReputationStore(store.engine, Clock(), Rules.from_config(Config().reputation))


def domain_row(session: Session, domain_id: int) -> ScannedDomain:
    row = operations.visible_domain(session, None, domain_id)
    assert row is not None
    return row


def test_a_domain_is_added_pending_verified_and_removed_with_its_keys(store: SqlStore) -> None:
    with store.session(locked=True) as session:
        acme = admin.get_customer(session, "acme")
        added = operations.add_domain(session, PORTAL, acme, " Shop.Example. ", NOW)
        assert (added.domain, added.state) == ("shop.example", "pending")
        token, domain_id = added.verification_token, added.id
        assert token is not None
    with store.session() as session:
        row = domain_row(session, domain_id)
        with pytest.raises(ConflictError, match="new token"):
            operations.mark_domain_verified(session, PORTAL, row, "0" * 32, NOW)
    with store.session() as session:
        row = domain_row(session, domain_id)
        operations.mark_domain_verified(session, PORTAL, row, token, NOW)
    with store.session() as session:
        row = domain_row(session, domain_id)
        assert row.state == "verified" and row.verified_at == NOW
        session.add(
            DkimKey(
                domain=row,
                selector="s1",
                algorithm="ed25519-sha256",
                public_key="AAAA",
                created_at=NOW,
            )
        )
    with store.session() as session:
        row = domain_row(session, domain_id)
        assert operations.remove_domain(session, PORTAL, row, NOW) == ["s1"]
    with store.session() as session:
        assert session.scalars(select(ScannedDomain)).all() == []
    assert [(row[4], row[5]) for row in audit(store)] == [
        ("domain.add", "shop.example"),
        ("domain.verify", "shop.example"),
        ("domain.remove", "shop.example"),
    ]


def test_a_domain_refused_names_no_other_customer(store: SqlStore) -> None:
    with store.session(locked=True) as session:
        globex = admin.get_customer(session, "globex")
        operations.add_domain(session, PORTAL, globex, "mail.globex.example", NOW)
    for domain in ("mail.globex.example", "a.mail.globex.example", "globex.example"):
        with pytest.raises(ConflictError) as refused, store.session(locked=True) as session:
            acme = admin.get_customer(session, "acme")
            operations.add_domain(session, PORTAL, acme, domain, NOW)
        assert "'globex'" not in refused.value.public
        if domain == "globex.example":  # a domain within it: which one is not told
            assert "mail.globex.example" not in refused.value.public
    with pytest.raises(InvalidInput), store.session(locked=True) as session:
        acme = admin.get_customer(session, "acme")
        operations.add_domain(session, PORTAL, acme, "not a domain", NOW)
    assert [row[4] for row in audit(store)] == ["domain.add"]


def test_customers_are_added_replanned_and_removed_with_their_entries(store: SqlStore) -> None:
    with store.session() as session:
        operations.add_customer(session, PORTAL, "initech", "free", NOW)
    with pytest.raises(ConflictError, match="already exists"), store.session() as session:
        operations.add_customer(session, PORTAL, "initech", "paid", NOW)
    for name, plan in (("two words", "free"), ("ok", "gold")):
        with pytest.raises(InvalidInput), store.session() as session:
            operations.add_customer(session, PORTAL, name, plan, NOW)
    with store.session() as session:
        initech = admin.get_customer(session, "initech")
        operations.set_plan(session, PORTAL, initech, "paid", NOW)
        operations.set_plan(session, PORTAL, initech, "paid", NOW)  # no change, no entry
        with pytest.raises(InvalidInput):
            operations.set_plan(session, PORTAL, initech, "gold", NOW)
    _, hashed = operations.new_password()
    with store.session() as session:
        initech = admin.get_customer(session, "initech")
        assert initech.plan == "paid"
        operations.add_sasl_account(session, PORTAL, initech, "app@initech.example", hashed, NOW)
    with pytest.raises(ConflictError, match="SASL account"), store.session() as session:
        operations.remove_customer(session, PORTAL, admin.get_customer(session, "initech"), NOW)
    with store.session() as session:
        account = session.scalars(select(SaslAccount)).one()
        operations.remove_sasl_account(session, PORTAL, account, NOW)
    with store.session() as session:
        operations.remove_customer(session, PORTAL, admin.get_customer(session, "initech"), NOW)
    with store.session() as session:
        assert [c.name for c in session.scalars(select(Customer).order_by(Customer.name))] == [
            "acme",
            "globex",
        ]
        logged = [(e.customer_id, e.customer, e.action, e.detail) for e in entries(session)]
    assert [row[2] for row in reversed(logged)] == [
        "customer.add",
        "customer.plan",
        "sasl.add",
        "sasl.remove",
        "customer.remove",
    ]
    # The customer is gone; its entries keep its name.
    assert {row[:2] for row in logged} == {(None, "initech")}
    assert ("free -> paid") in [row[3] for row in logged]


def test_release_and_block_are_audited_in_the_state_changes_transaction(
    store: SqlStore,
) -> None:
    with store.session(locked=True) as session:
        acme = admin.get_customer(session, "acme")
        server_id = operations.add_server(
            session, PORTAL, acme, "81.2.69.0/28", None, LAX, NOW, by_operator=False
        ).id
    states = reputation(store)
    block = OperatorActionKind.BLOCK
    changes = operations.change_state(
        states, PORTAL, IdentityKind.SERVER, server_id, block, "ops", "spam run"
    )
    assert [(c.old, c.new, c.actor) for c in changes] == [("veilig", "onveilig", "ops")]
    # Blocking a blocked one changes nothing, and records nothing.
    assert (
        operations.change_state(states, PORTAL, IdentityKind.SERVER, server_id, block, "ops", "x")
        == []
    )
    release = OperatorActionKind.RELEASE

    def broken(connection: object, transitions: object) -> None:
        raise RuntimeError("the audit entry could not be written")

    # What fails after the state change undoes it: one transaction.
    with pytest.raises(RuntimeError):
        states.operator(IdentityKind.SERVER, server_id, release, "ops", "fixed", then=broken)
    assert states.standing(IdentityKind.SERVER, server_id).state == "onveilig"
    operations.change_state(states, PORTAL, IdentityKind.SERVER, server_id, release, "ops", "fixed")
    assert states.standing(IdentityKind.SERVER, server_id).state == "veilig"
    with store.session() as session:
        logged = [(e.customer, e.action, e.target, e.detail) for e in reversed(entries(session))]
    assert logged[1:] == [
        ("acme", "server.block", "81.2.69.0/28", "veilig -> onveilig by ops: spam run"),
        ("acme", "server.release", "81.2.69.0/28", "onveilig -> veilig by ops: fixed"),
    ]


def test_another_customers_domain_is_invisible(store: SqlStore) -> None:
    with store.session(locked=True) as session:
        acme, globex = admin.get_customer(session, "acme"), admin.get_customer(session, "globex")
        row = operations.add_domain(session, PORTAL, globex, "globex.example", NOW)
        assert operations.visible_domain(session, acme.id, row.id) is None
        assert operations.visible_domain(session, globex.id, row.id) is row
        assert operations.visible_domain(session, None, row.id) is row
        assert operations.visible_domain(session, None, row.id + 1000) is None
