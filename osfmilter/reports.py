"""The operator's reports (docs/records.rst, 'Reports'): monthly volume, the bill, refusals, states.

Each report reads the tables in one transaction and returns typed rows; the
command line renders them as a table, CSV or JSON. The same figures are
available to SQL users through the ``report_*`` views (migration 0004) and
the queries in ``contrib/sql/reports.sql``; the tests hold both to the same
numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from osfmilter.config import BillingSection, Plans
from osfmilter.limits.volume import allowance, month_end
from osfmilter.model import IdentityKind, ServerState
from osfmilter.reputation import Rules, Standing
from osfmilter.storage.schema import (
    Customer,
    Event,
    MonthlyVolume,
    SaslAccount,
    SmtpServer,
    StateChange,
)

# How the refusals report names a client that is not registered (no identity).
UNREGISTERED = "unregistered:"


# Monthly volume --------------------------------------------------------------


@dataclass(frozen=True)
class VolumeRow:
    """One sending domain's outbound month, and the allowance the milter holds it to."""

    customer: str
    plan: str
    domain: str  # "" is the customer's bucket for unknown senders
    messages: int
    bytes: int
    inbound_bytes: int  # what the domain received this month (earns a free allowance)
    allowance: int | None  # None: unlimited

    @property
    def use_percent(self) -> float | None:
        if self.allowance is None:
            return None
        if self.allowance == 0:
            return 100.0
        return round(100 * self.bytes / self.allowance, 2)


def volume(session: Session, month: str, plans: Plans) -> list[VolumeRow]:
    """Every outbound volume row of the month, by customer and domain."""
    inbound: dict[str, int] = {
        domain: int(total)
        for domain, total in session.execute(
            select(MonthlyVolume.domain, func.sum(MonthlyVolume.bytes))
            .where(MonthlyVolume.month == month, MonthlyVolume.direction == "inbound")
            .group_by(MonthlyVolume.domain)
        )
    }
    rows = []
    for customer, plan, domain, messages, size in session.execute(
        select(
            Customer.name,
            Customer.plan,
            MonthlyVolume.domain,
            MonthlyVolume.messages,
            MonthlyVolume.bytes,
        )
        .join(Customer, Customer.id == MonthlyVolume.customer_id)
        .where(MonthlyVolume.month == month, MonthlyVolume.direction == "outbound")
        .order_by(Customer.name, MonthlyVolume.domain)
    ):
        received = inbound.get(domain, 0) if domain else 0
        rows.append(
            VolumeRow(
                customer,
                plan,
                domain,
                int(messages),
                int(size),
                received,
                # The milter's own arithmetic (inbound volume counts for known domains only).
                allowance(plans.limits(plan), domain, received),
            )
        )
    return rows


# The bill --------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    extra_gb: int  # started GB beyond the included volume
    amount: int


def price(plan: str, volume_bytes: int, billing: BillingSection) -> Price:
    """A month's price: the base includes some volume, then every started GB costs more.

    extra_gb = ceil(max(0, bytes - paid_included_bytes) / gb), in integers.
    """
    if plan != "paid":
        return Price(0, 0)
    over = max(0, volume_bytes - billing.paid_included_bytes)
    extra = -(-over // billing.gb)
    return Price(extra, billing.paid_base_price + extra * billing.paid_price_per_started_gb)


@dataclass(frozen=True)
class BillRow:
    customer: str
    plan: str
    messages: int
    bytes: int  # outbound over all the customer's domains, the unknown-sender bucket included
    extra_gb: int
    amount: int
    currency: str


def bill(session: Session, month: str, billing: BillingSection) -> list[BillRow]:
    """Every customer that existed by the end of the month, with its outbound volume and price."""
    totals = (
        select(
            MonthlyVolume.customer_id,
            func.sum(MonthlyVolume.messages).label("messages"),
            func.sum(MonthlyVolume.bytes).label("bytes"),
        )
        .where(MonthlyVolume.month == month, MonthlyVolume.direction == "outbound")
        .group_by(MonthlyVolume.customer_id)
        .subquery()
    )
    rows = []
    for customer, plan, messages, size in session.execute(
        select(Customer.name, Customer.plan, totals.c.messages, totals.c.bytes)
        .outerjoin(totals, totals.c.customer_id == Customer.id)
        .where(Customer.created_at < month_end(month))
        .order_by(Customer.name)
    ):
        used = int(size or 0)
        cost = price(plan, used, billing)
        rows.append(
            BillRow(
                customer,
                plan,
                int(messages or 0),
                used,
                cost.extra_gb,
                cost.amount,
                billing.currency,
            )
        )
    return rows


# Refusals --------------------------------------------------------------------


@dataclass(frozen=True)
class RefusalRow:
    identity: str  # "server:NET", "sasl:LOGIN", or "unregistered:IP"
    customer: str | None
    reason: str
    count: int
    last_at: datetime


def event_identity() -> ColumnElement[str]:
    """An event's identity as the refusals name it: ``unregistered:IP`` for a client without one."""
    return func.coalesce(func.nullif(Event.identity, ""), literal(UNREGISTERED) + Event.client_ip)


def refusals(session: Session, since: datetime, limit: int) -> list[RefusalRow]:
    """The identities refused most often since a moment, per reason (every non-accept event)."""
    refused = (
        select(
            event_identity().label("identity"),
            Event.customer_id,
            Event.reason,
            Event.at,
        )
        .where(Event.action != "accept", Event.at >= since)
        .subquery()
    )
    count = func.count().label("count")
    last_at = func.max(refused.c.at).label("last_at")
    result = session.execute(
        select(refused.c.identity, Customer.name, refused.c.reason, count, last_at)
        .outerjoin(Customer, Customer.id == refused.c.customer_id)
        .group_by(refused.c.identity, Customer.name, refused.c.reason)
        .order_by(count.desc(), last_at.desc(), refused.c.identity, refused.c.reason)
        .limit(limit)
    )
    return [
        RefusalRow(identity, customer, reason, int(n), at)
        for identity, customer, reason, n, at in result
    ]


# States ----------------------------------------------------------------------


@dataclass(frozen=True)
class StateRow:
    kind: str
    identity: str  # "server:NET" or "sasl:LOGIN", as in events and the decision log
    customer: str
    state: str
    since: datetime
    last_reason: str  # of the latest state_history row; "" if there is none
    last_actor: str
    # verdacht: when it is veilig again if nothing happens (recorded at the next look).
    veilig_again_at: datetime | None


@dataclass(frozen=True)
class StatesReport:
    counts: dict[str, int]  # every state, zeros included
    identities: list[StateRow]  # the ones that are not veilig, onveilig first


_SEVERITY = {ServerState.ONVEILIG: 0, ServerState.VERDACHT: 1, ServerState.VEILIG: 2}


@dataclass(frozen=True)
class Identity:
    """A server or SASL account as stored: its standing, and whose it is."""

    kind: IdentityKind
    id: int
    name: str
    customer: str
    state: str
    since: datetime
    last_incident_at: datetime | None


def all_identities(session: Session, customer_id: int | None = None) -> list[Identity]:
    """Every server, then every SASL account (one customer's, if given), by customer and name."""
    found: list[Identity] = []
    for kind, table, name in (
        (IdentityKind.SERVER, SmtpServer, SmtpServer.network),
        (IdentityKind.SASL, SaslAccount, SaslAccount.login),
    ):
        query = (
            select(
                table.id,
                name,
                Customer.name,
                table.state,
                table.state_changed_at,
                table.last_incident_at,
            )
            .join(Customer, Customer.id == table.customer_id)
            .order_by(Customer.name, name)
        )
        if customer_id is not None:
            query = query.where(table.customer_id == customer_id)
        found.extend(Identity(kind, *row) for row in session.execute(query))
    return found


def states(session: Session, rules: Rules) -> StatesReport:
    """Identities per state as stored, and each identity that is not veilig."""
    counts = {str(state): 0 for state in ServerState}
    found: list[Identity] = []
    for identity in all_identities(session):
        counts[identity.state] = counts.get(identity.state, 0) + 1
        if identity.state != ServerState.VEILIG:
            found.append(identity)
    latest = _latest_changes(session, found)
    identities = []
    for f in found:
        standing = Standing(ServerState(f.state), f.since, f.last_incident_at)
        reason, actor = latest.get((f.kind, f.id), ("", ""))
        identities.append(
            StateRow(
                str(f.kind),
                f"{f.kind}:{f.name}",
                f.customer,
                f.state,
                f.since,
                reason,
                actor,
                standing.recovery_due(rules),
            )
        )
    identities.sort(key=lambda r: (_SEVERITY[ServerState(r.state)], r.since, r.identity))
    return StatesReport(counts, identities)


def _latest_changes(
    session: Session, found: Sequence[Identity]
) -> dict[tuple[IdentityKind, int], tuple[str, str]]:
    """(reason, actor) of each identity's latest state change."""
    latest: dict[tuple[IdentityKind, int], tuple[str, str]] = {}
    for kind, column in (
        (IdentityKind.SERVER, StateChange.smtp_server_id),
        (IdentityKind.SASL, StateChange.sasl_account_id),
    ):
        ids = [f.id for f in found if f.kind is kind]
        if not ids:
            continue
        for id_, reason, actor in session.execute(
            select(column, StateChange.reason, StateChange.actor)
            .where(column.in_(ids))
            .order_by(StateChange.at, StateChange.id)
        ):
            assert id_ is not None  # selected by it
            latest[(kind, id_)] = (reason, actor)  # the last one wins
    return latest
