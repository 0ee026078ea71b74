"""``osfmilter report ...`` on fixed data, and the SQL views giving the same numbers."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, bindparam, insert, inspect, select, text
from sqlalchemy.orm import Session

from osfmilter import reports
from osfmilter.cli import main
from osfmilter.config import BillingSection
from osfmilter.storage import admin
from osfmilter.storage.db import _alembic_config, schema_status
from osfmilter.storage.domains import add_domain
from osfmilter.storage.schema import (
    Event,
    MonthlyVolume,
    SaslAccount,
    SmtpServer,
    StateChange,
    UTCDateTime,
)
from tests.db.conftest import Run
from tests.fakes import TEST_REGISTRATION

GB = 1_000_000_000
MONTH = "2025-03"
REPORTS_SQL = Path(__file__).parents[2] / "contrib" / "sql" / "reports.sql"
VIEWS = {
    "report_monthly_volume",
    "report_customers",
    "report_refused_events",
    "report_refusals",
    "report_states",
    "report_state_changes",
}


def at(day: int, hour: int = 12, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


def event(
    when: datetime,
    identity: str,
    customer_id: int | None,
    action: str,
    reason: str,
    client_ip: str = "192.0.2.10",
) -> dict[str, object]:
    return dict(
        at=when,
        node="relay1",
        queue_id="4XyZ1",
        stage="mail",
        client_ip=client_ip,
        identity=identity,
        customer_id=customer_id,
        envelope_sender="a@example.com",
        header_from_domain="example.com",
        rcpt_count=1,
        size=1000,
        action=action,
        reason=reason,
        smtp_code=None if action == "accept" else 451,
        enhanced_code="4.7.1",
    )


def volume(
    month: str, direction: str, customer_id: int, domain: str, messages: int, size: int
) -> MonthlyVolume:
    return MonthlyVolume(
        month=month,
        direction=direction,
        customer_id=customer_id,
        domain=domain,
        messages=messages,
        bytes=size,
    )


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """Customers, volume, events and states with fixed times (March 2025)."""
    rules = TEST_REGISTRATION
    with Session(engine) as session, session.begin():
        acme = admin.add_customer(session, "acme", "free", at(10, month=1))
        bigco = admin.add_customer(session, "bigco", "paid", at(1, 0, month=2))
        admin.add_customer(session, "gratis", "free", at(20, month=2))
        admin.add_customer(session, "small", "paid", at(31, 23, month=3))
        admin.add_customer(session, "later", "paid", at(1, 0, month=4))
        for domain, customer in (
            ("example.com", "acme"),
            ("example.org", "acme"),
            ("big.example", "bigco"),
        ):
            add_domain(session, domain, customer, at(10, month=1))
        acme_server = admin.add_server(session, "192.0.2.0/24", "acme", rules, at(10, month=1))
        big_server = admin.add_server(session, "198.51.100.7", "bigco", rules, at(1, month=2))
        admin.add_sasl(session, "alice", "acme", at(10, month=1))
        bob = admin.add_sasl(session, "bob", "bigco", at(1, month=2))

        acme_server.state, acme_server.state_changed_at = "verdacht", at(5)
        acme_server.last_incident_at = at(6)
        big_server.state, big_server.state_changed_at = "onveilig", at(8)
        bob.state, bob.state_changed_at = "verdacht", at(9)  # set by hand: no history
        session.add_all(
            [
                StateChange(
                    at=at(5),
                    smtp_server_id=acme_server.id,
                    old_state="veilig",
                    new_state="verdacht",
                    reason="spam detected (score 12.0)",
                    actor="system",
                ),
                StateChange(
                    at=at(7),
                    smtp_server_id=big_server.id,
                    old_state="veilig",
                    new_state="verdacht",
                    reason="virus detected: Eicar",
                    actor="system",
                ),
                StateChange(
                    at=at(8),
                    smtp_server_id=big_server.id,
                    old_state="verdacht",
                    new_state="onveilig",
                    reason="confirmed spam gateway",
                    actor="ops",
                ),
            ]
        )

        session.add_all(
            [
                volume(MONTH, "outbound", acme.id, "example.com", 3, 1_500_000_000),
                volume(MONTH, "outbound", acme.id, "", 2, 250_000_000),
                volume(MONTH, "outbound", acme.id, "example.org", 1, 10),
                volume(MONTH, "inbound", acme.id, "example.com", 40, 400_000_000),
                volume(MONTH, "outbound", bigco.id, "big.example", 7, 2 * GB + 1),
                volume(MONTH, "outbound", bigco.id, "", 1, 500),
                volume(MONTH, "inbound", bigco.id, "big.example", 9, 5 * GB),
                # Other months and directions must not leak in.
                volume("2025-02", "outbound", acme.id, "example.com", 1, 999),
                volume("2025-02", "inbound", acme.id, "example.org", 1, 777),
            ]
        )
        acme_id, bigco_id = acme.id, bigco.id

    server, sasl = "server:192.0.2.0/24", "sasl:alice"
    rows = (
        [event(at(d), server, acme_id, "tempfail", "rate_limit") for d in (2, 4, 9, 10)]
        + [event(at(d, 8), server, acme_id, "reject", "spam") for d in (3, 6)]
        + [event(at(d), "", None, "reject", "relay_denied", "203.0.113.5") for d in (1, 2, 11)]
        + [event(at(12), sasl, acme_id, "tempfail", "recipient_limit")]
        + [event(at(d), server, acme_id, "accept", "accepted") for d in range(1, 6)]
        + [event(at(15, month=2), "server:198.51.100.7/32", bigco_id, "reject", "blocked")]
    )
    with engine.begin() as connection:
        connection.execute(insert(Event), rows)
    return engine


# The queries of contrib/sql/reports.sql --------------------------------------


def sql_queries() -> dict[str, str]:
    """The named queries in contrib/sql/reports.sql, comments stripped."""
    queries: dict[str, list[str]] = {}
    name = None
    for line in REPORTS_SQL.read_text().splitlines():
        if match := re.match(r"^-- name: (\w+)$", line):
            name = match[1]
            queries[name] = []
        elif name and not line.strip().startswith("--"):
            queries[name].append(line)
    return {k: "\n".join(v).strip().rstrip(";") for k, v in queries.items()}


def sql(engine: Engine, name: str, **params: object) -> list[dict[str, Any]]:
    statement = text(sql_queries()[name])
    if "since" in params:
        statement = statement.bindparams(bindparam("since", type_=UTCDateTime()))
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(statement, params).mappings()]


def view(engine: Engine, name: str) -> list[dict[str, Any]]:
    assert name in VIEWS
    query = text(f"SELECT * FROM {name}")  # noqa: S608 (one of ours)
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(query).mappings()]


def utc(value: str | datetime) -> datetime:
    """A time from a view: text on SQLite, an aware datetime on PostgreSQL."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def number(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def report_json(run: Run, *args: str) -> Any:
    status, out, err = run("report", *args, "--json")
    assert status == 0, err
    return json.loads(out)


# Volume ------------------------------------------------------------------------


def test_volume_report(seeded: Engine, run: Run) -> None:
    rows = report_json(run, "volume", "--month", MONTH)
    assert rows["month"] == MONTH
    found = [
        (
            r["customer"],
            r["domain"],
            r["messages"],
            r["bytes"],
            r["inbound_bytes"],
            r["allowance"],
            r["use_percent"],
        )
        for r in rows["rows"]
    ]
    assert found == [
        ("acme", "", 2, 250_000_000, 0, GB, 25.0),  # unknown senders: the base only
        ("acme", "example.com", 3, 1_500_000_000, 400_000_000, GB + 800_000_000, 83.33),
        ("acme", "example.org", 1, 10, 0, GB, 0.0),
        ("bigco", "", 1, 500, 0, None, None),  # paid: unlimited
        ("bigco", "big.example", 7, 2 * GB + 1, 5 * GB, None, None),
    ]

    status, out, _ = run("report", "volume", "--month", MONTH)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "customer",
        "plan",
        "domain",
        "messages",
        "bytes",
        "inbound",
        "allowance",
        "use",
    ]
    assert lines[1].split() == [
        "acme",
        "free",
        "(unknown",
        "senders)",
        "2",
        "250000000",
        "-",
        "1000000000",
        "25.0%",
    ]
    assert lines[5].split() == [
        "bigco",
        "paid",
        "big.example",
        "7",
        "2000000001",
        "5000000000",
        "unlimited",
        "-",
    ]


def test_volume_csv(seeded: Engine, run: Run) -> None:
    status, out, _ = run("report", "volume", "--month", MONTH, "--csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == [
        "month",
        "customer",
        "plan",
        "domain",
        "messages",
        "bytes",
        "inbound_bytes",
        "allowance",
        "use_percent",
    ]
    assert rows[1] == {
        "month": MONTH,
        "customer": "acme",
        "plan": "free",
        "domain": "example.com",
        "messages": "3",
        "bytes": "1500000000",
        "inbound_bytes": "400000000",
        "allowance": "1800000000",
        "use_percent": "83.33",
    }
    assert rows[4]["allowance"] == "unlimited" and rows[4]["use_percent"] == ""


def test_volume_follows_the_plans_config(seeded: Engine, run: Run) -> None:
    config = "[plans.free]\nmonthly_volume_base = 500000000\ninbound_volume_factor = 0.5\n"
    status, out, _ = run("report", "volume", "--month", MONTH, "--json", config_text=config)
    assert status == 0
    allowances = {
        r["domain"]: r["allowance"] for r in json.loads(out)["rows"] if r["customer"] == "acme"
    }
    assert allowances == {"": 500_000_000, "example.com": 700_000_000, "example.org": 500_000_000}


def test_volume_sql_gives_the_cli_numbers(seeded: Engine, run: Run) -> None:
    cli = report_json(run, "volume", "--month", MONTH)["rows"]
    fields = ("customer", "plan", "domain", "messages", "bytes", "inbound_bytes", "allowance")
    from_sql = [
        tuple(
            number(r[f]) if f in ("messages", "bytes", "inbound_bytes", "allowance") else r[f]
            for f in fields
        )
        for r in sql(seeded, "monthly_volume", month=MONTH)
    ]
    assert from_sql == [tuple(r[f] for f in fields) for r in cli]

    raw = {
        (
            r["month"],
            r["customer"],
            r["plan"],
            r["domain"],
            r["direction"],
            number(r["messages"]),
            number(r["bytes"]),
        )
        for r in view(seeded, "report_monthly_volume")
    }
    assert ("2025-03", "acme", "free", "example.com", "outbound", 3, 1_500_000_000) in raw
    assert ("2025-02", "acme", "free", "example.org", "inbound", 1, 777) in raw
    assert len(raw) == 9


# The bill ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("volume_bytes", "extra_gb", "amount"),
    [
        (0, 0, 10),
        (1, 0, 10),
        (GB, 0, 10),
        (GB + 1, 1, 20),
        (2 * GB, 1, 20),
        (2 * GB + 1, 2, 30),
        (10 * GB, 9, 100),
    ],
)
def test_price_rounding(volume_bytes: int, extra_gb: int, amount: int) -> None:
    assert reports.price("paid", volume_bytes, BillingSection()) == reports.Price(extra_gb, amount)
    assert reports.price("free", volume_bytes, BillingSection()) == reports.Price(0, 0)


def test_bill(seeded: Engine, run: Run) -> None:
    bill = report_json(run, "bill", "--month", MONTH)
    assert bill["month"] == MONTH and bill["currency"] == "EUR"
    assert [
        (r["customer"], r["plan"], r["messages"], r["bytes"], r["extra_gb"], r["amount"])
        for r in bill["rows"]
    ] == [
        ("acme", "free", 6, 1_750_000_010, 0, 0),
        ("bigco", "paid", 8, 2 * GB + 501, 2, 30),  # its unknown-sender bytes count too
        ("gratis", "free", 0, 0, 0, 0),
        ("small", "paid", 0, 0, 0, 10),  # created on the month's last day: a whole month
    ]  # "later" was created in April

    status, out, _ = run("report", "bill", "--month", MONTH)
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == [
        "customer",
        "plan",
        "messages",
        "bytes",
        "extra",
        "GB",
        "amount",
    ]
    assert lines[2].split() == ["bigco", "paid", "8", "2000000501", "2", "30", "EUR"]
    assert lines[-1] == "total 2025-03: 40 EUR"

    status, out, _ = run("report", "bill", "--month", MONTH, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[1] == {
        "month": MONTH,
        "customer": "bigco",
        "plan": "paid",
        "messages": "8",
        "bytes": "2000000501",
        "extra_gb": "2",
        "amount": "30",
        "currency": "EUR",
    }
    assert len(rows) == 4


@pytest.mark.parametrize("month", ["2025-02", MONTH, "2025-04"])
def test_bill_sql_gives_the_cli_numbers(seeded: Engine, run: Run, month: str) -> None:
    cli = [
        (r["customer"], r["plan"], r["messages"], r["bytes"], r["extra_gb"], r["amount"])
        for r in report_json(run, "bill", "--month", month)["rows"]
    ]
    from_sql = [
        (
            r["customer"],
            r["plan"],
            number(r["messages"]),
            number(r["bytes"]),
            number(r["extra_gb"]),
            number(r["amount"]),
        )
        for r in sql(seeded, "bill", month=month)
    ]
    assert from_sql == cli
    assert {r[0] for r in cli} == {
        "2025-02": {"acme", "bigco", "gratis"},
        MONTH: {"acme", "bigco", "gratis", "small"},
        "2025-04": {"acme", "bigco", "gratis", "small", "later"},
    }[month]


def test_bill_rounding_boundaries_cli_and_sql(engine: Engine, run: Run) -> None:
    cases = {"b0": 0, "b1": GB, "b1p": GB + 1, "b2": 2 * GB, "b2p": 2 * GB + 1}
    with Session(engine) as session, session.begin():
        for name, size in cases.items():
            customer = admin.add_customer(session, name, "paid", at(1))
            if size:
                session.add(volume(MONTH, "outbound", customer.id, "", 1, size))
    expected = {"b0": 10, "b1": 10, "b1p": 20, "b2": 20, "b2p": 30}
    cli = {r["customer"]: r["amount"] for r in report_json(run, "bill", "--month", MONTH)["rows"]}
    assert cli == expected
    from_sql = {r["customer"]: number(r["amount"]) for r in sql(engine, "bill", month=MONTH)}
    assert from_sql == expected


def test_bill_follows_the_billing_config(seeded: Engine, run: Run) -> None:
    config = (
        '[billing]\ncurrency = "USD"\npaid_base_price = 5\npaid_included_bytes = 0\n'
        "paid_price_per_started_gb = 3\ngb = 500000000\n"
    )
    status, out, _ = run("report", "bill", "--month", MONTH, "--json", config_text=config)
    assert status == 0
    bill = json.loads(out)
    assert bill["currency"] == "USD"
    bigco = next(r for r in bill["rows"] if r["customer"] == "bigco")
    # 2000000501 bytes: 5 started half-GBs.
    assert (bigco["extra_gb"], bigco["amount"], bigco["currency"]) == (5, 20, "USD")


# Refusals ----------------------------------------------------------------------


def test_refused_report(seeded: Engine, run: Run) -> None:
    refused = report_json(run, "refused", "--since", "2025-03-01")
    assert refused["since"] == "2025-03-01T00:00:00+00:00"
    assert [
        (r["identity"], r["customer"], r["reason"], r["count"], r["last_at"])
        for r in refused["rows"]
    ] == [
        ("server:192.0.2.0/24", "acme", "rate_limit", 4, "2025-03-10T12:00:00+00:00"),
        ("unregistered:203.0.113.5", None, "relay_denied", 3, "2025-03-11T12:00:00+00:00"),
        ("server:192.0.2.0/24", "acme", "spam", 2, "2025-03-06T08:00:00+00:00"),
        ("sasl:alice", "acme", "recipient_limit", 1, "2025-03-12T12:00:00+00:00"),
    ]  # accepts do not count, nor February's refusal

    top = report_json(run, "refused", "--since", "2025-03-01T00:00", "--limit", "2")["rows"]
    assert [r["reason"] for r in top] == ["rate_limit", "relay_denied"]

    status, out, _ = run("report", "refused", "--since", "2025-03-01")
    lines = out.splitlines()
    assert status == 0 and lines[0] == "refusals since 2025-03-01T00:00:00+00:00"
    assert lines[1].split() == ["identity", "customer", "reason", "count", "last", "seen"]
    assert lines[3].split() == [
        "unregistered:203.0.113.5",
        "-",
        "relay_denied",
        "3",
        "2025-03-11T12:00:00+00:00",
    ]

    status, out, _ = run("report", "refused", "--since", "2025-03-01", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[1] == {
        "identity": "unregistered:203.0.113.5",
        "customer": "",
        "reason": "relay_denied",
        "count": "3",
        "last_at": "2025-03-11T12:00:00+00:00",
    }


def test_refused_since_a_duration(engine: Engine, run: Run) -> None:
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(Event),
            [
                event(now - timedelta(hours=2), "", None, "reject", "relay_denied", "203.0.113.9"),
                event(now - timedelta(days=3), "", None, "reject", "relay_denied", "203.0.113.9"),
                event(now - timedelta(days=10), "", None, "reject", "relay_denied", "203.0.113.9"),
            ],
        )
    counts = {
        since: [r["count"] for r in report_json(run, "refused", "--since", since)["rows"]]
        for since in ("12h", "7d", "30d")
    }
    assert counts == {"12h": [1], "7d": [2], "30d": [3]}
    assert [r["count"] for r in report_json(run, "refused")["rows"]] == [2]  # default 7d


def test_refused_sql_gives_the_cli_numbers(seeded: Engine, run: Run) -> None:
    def rows(found: list[dict[str, Any]]) -> list[tuple[object, ...]]:
        return [
            (r["identity"], r["customer"], r["reason"], number(r["count"]), utc(r["last_at"]))
            for r in found
        ]

    cli = report_json(run, "refused", "--since", "2025-03-01")["rows"]
    since = datetime(2025, 3, 1, tzinfo=UTC)
    assert rows(sql(seeded, "top_refused", since=since)) == rows(cli)

    everything = report_json(run, "refused", "--since", "2000-01-01", "--limit", "100")["rows"]
    assert len(everything) == 5
    by_key = {r[:3]: r for r in rows(view(seeded, "report_refusals"))}
    assert {r[:3]: r for r in rows(everything)} == by_key
    refused_events = view(seeded, "report_refused_events")
    assert len(refused_events) == 11
    assert {r["action"] for r in refused_events} == {"tempfail", "reject"}


# States ------------------------------------------------------------------------


def test_states_report(seeded: Engine, run: Run) -> None:
    report = report_json(run, "states")
    assert report["counts"] == {"veilig": 1, "verdacht": 2, "onveilig": 1}
    assert [
        (
            r["identity"],
            r["customer"],
            r["state"],
            r["since"],
            r["last_reason"],
            r["last_actor"],
            r["veilig_again_at"],
        )
        for r in report["identities"]
    ] == [
        (
            "server:198.51.100.7/32",
            "bigco",
            "onveilig",
            "2025-03-08T12:00:00+00:00",
            "confirmed spam gateway",
            "ops",
            None,
        ),
        (
            "server:192.0.2.0/24",
            "acme",
            "verdacht",
            "2025-03-05T12:00:00+00:00",
            "spam detected (score 12.0)",
            "system",
            "2025-03-08T12:00:00+00:00",
        ),
        (
            "sasl:bob",
            "bigco",
            "verdacht",
            "2025-03-09T12:00:00+00:00",
            "",
            "",
            "2025-03-11T12:00:00+00:00",
        ),
    ]

    status, out, _ = run("report", "states")
    lines = out.splitlines()
    assert status == 0
    assert [line.split() for line in lines[:4]] == [
        ["state", "identities"],
        ["veilig", "1"],
        ["verdacht", "2"],
        ["onveilig", "1"],
    ]
    assert lines[6].split()[:4] == [
        "server:198.51.100.7/32",
        "bigco",
        "onveilig",
        "2025-03-08T12:00:00+00:00",
    ]
    assert re.search(r"  ops +confirmed spam gateway$", lines[6])

    status, out, _ = run("report", "states", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["identity"] for r in rows] == [
        "server:198.51.100.7/32",
        "server:192.0.2.0/24",
        "sasl:bob",
    ]
    assert rows[2]["veilig_again_at"] == "2025-03-11T12:00:00+00:00"
    assert rows[0]["veilig_again_at"] == ""


def test_states_sql_gives_the_cli_numbers(seeded: Engine, run: Run) -> None:
    report = report_json(run, "states")
    counts = {r["state"]: number(r["identities"]) for r in sql(seeded, "state_counts")}
    assert counts == {k: v for k, v in report["counts"].items() if v}

    def rows(found: list[dict[str, Any]]) -> list[tuple[object, ...]]:
        return [
            (
                r["identity"],
                r["customer"],
                r["state"],
                utc(r["since"]),
                r["last_reason"] or "",
                r["last_actor"] or "",
            )
            for r in found
        ]

    assert rows(sql(seeded, "not_veilig")) == rows(report["identities"])
    assert len(view(seeded, "report_states")) == 4

    since = datetime(2025, 3, 6, tzinfo=UTC)
    changes = [
        (utc(r["at"]), r["identity"], r["customer"], r["old_state"], r["new_state"], r["actor"])
        for r in sql(seeded, "state_changes", since=since)
    ]
    assert changes == [
        (at(8), "server:198.51.100.7/32", "bigco", "verdacht", "onveilig", "ops"),
        (at(7), "server:198.51.100.7/32", "bigco", "veilig", "verdacht", "system"),
    ]
    assert len(view(seeded, "report_state_changes")) == 3


def test_states_of_an_empty_database(run: Run) -> None:
    report = report_json(run, "states")
    assert report == {"counts": {"veilig": 0, "verdacht": 0, "onveilig": 0}, "identities": []}


# Input, views and the schema -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("volume", "--month", "2025-13"), "'2025-13' is not a month (YYYY-MM"),
        (("volume", "--month", "2025-3"), "'2025-3' is not a month"),
        (("bill", "--month", "March"), "'March' is not a month"),
        (("bill", "--month", "2025-03-01"), "is not a month"),
        (("refused", "--since", "yesterday"), "'yesterday' is neither a date"),
        (("refused", "--since", "0d"), "'0d' is neither a date"),
        (("refused", "--since", "2025-02-30"), "is neither a date"),
    ],
)
def test_bad_input_is_one_line_and_status_2(run: Run, args: tuple[str, ...], message: str) -> None:
    status, out, err = run("report", *args)
    assert status == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [("refused", "--limit", "0"), ("refused", "--limit", "x"), ("volume", "--csv", "--json")],
)
def test_bad_options_are_usage_errors(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["report", *args])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_empty_month(run: Run) -> None:
    assert report_json(run, "volume", "--month", "1999-12") == {"month": "1999-12", "rows": []}
    status, out, _ = run("report", "volume", "--month", "1999-12", "--csv")
    assert status == 0 and out.startswith("month,customer,plan,domain,")


def test_views_exist_and_come_and_go_with_the_revision(engine: Engine) -> None:
    assert set(inspect(engine).get_view_names()) >= VIEWS
    command.downgrade(_alembic_config(engine), "0003")
    assert not set(inspect(engine).get_view_names()) & VIEWS
    assert schema_status(engine)[0] == "0003"
    command.upgrade(_alembic_config(engine), "head")
    assert set(inspect(engine).get_view_names()) >= VIEWS


def test_every_query_in_reports_sql_runs(seeded: Engine) -> None:
    params = {"month": MONTH, "since": datetime(2025, 1, 1, tzinfo=UTC)}
    queries = sql_queries()
    assert set(queries) == {
        "monthly_volume",
        "bill",
        "top_refused",
        "state_counts",
        "not_veilig",
        "state_changes",
    }
    for name, query in queries.items():
        needed = {k: v for k, v in params.items() if f":{k}" in query}
        assert sql(seeded, name, **needed), name


def test_identity_rows_match_the_tables(seeded: Engine) -> None:
    with Session(seeded) as session:
        servers = session.scalars(select(SmtpServer.network)).all()
        logins = session.scalars(select(SaslAccount.login)).all()
    names = {r["identity"] for r in view(seeded, "report_states")}
    assert names == {f"server:{n}" for n in servers} | {f"sasl:{n}" for n in logins}
