"""``/api/v1/usage``, ``/bill`` and ``/events``: the reports' numbers, the caller's rows, pages."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from osfmilter import reports
from osfmilter.storage import admin
from osfmilter.storage.schema import Customer, Event, MonthlyVolume
from tests.web.conftest import NOW, Api
from tests.web.helpers import error_of, event

MONTH = "2026-12"
GB = 1024**3


@pytest.fixture
def volume(api: Api) -> Api:
    """Outbound and inbound volume of both customers this month, and one last month."""
    with api.store.session() as session:
        ids = {c.name: c.id for c in session.scalars(select(Customer))}
        for month, direction, customer, domain, messages, size in (
            (MONTH, "outbound", "acme", "acme.example", 120, 700_000_000),
            (MONTH, "outbound", "acme", "", 3, 12_345),
            (MONTH, "inbound", "acme", "acme.example", 0, 400_000_000),
            (MONTH, "outbound", "globex", "globex.example", 9000, 6 * GB + 1),
            ("2026-11", "outbound", "acme", "acme.example", 1, 10),
        ):
            session.add(
                MonthlyVolume(
                    month=month,
                    direction=direction,
                    customer_id=ids[customer],
                    domain=domain,
                    messages=messages,
                    bytes=size,
                )
            )
    return api


def as_report(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {**vars(r), **({"use_percent": r.use_percent} if hasattr(r, "use_percent") else {})}
        for r in rows
    ]


def test_usage_is_the_volume_report_of_the_callers_customer(volume: Api) -> None:
    api = volume
    config = api.client.app.state.context.config  # type: ignore[attr-defined]
    with api.store.session() as session:
        report = as_report(reports.volume(session, MONTH, config.plans))
    answer = api.client.get("/api/v1/usage", params={"month": MONTH}, headers=api.acme)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"month": MONTH, "rows": [r for r in report if r["customer"] == "acme"]}
    assert [r["domain"] for r in answer.json()["rows"]] == ["", "acme.example"]
    # This month is the default; the operator sees everyone's, or one customer's.
    assert api.client.get("/api/v1/usage", headers=api.acme).json() == answer.json()
    everyone = api.client.get("/api/v1/usage", headers=api.operator).json()
    assert everyone == {"month": MONTH, "rows": report}
    only = api.client.get("/api/v1/usage", params={"customer": "acme"}, headers=api.operator)
    assert only.json() == answer.json()
    last = api.client.get("/api/v1/usage", params={"month": "2026-11"}, headers=api.acme).json()
    assert [r["bytes"] for r in last["rows"]] == [10]


def test_the_bill_is_the_bill_report_of_the_callers_customer(volume: Api) -> None:
    api = volume
    config = api.client.app.state.context.config  # type: ignore[attr-defined]
    with api.store.session() as session:
        report = [vars(r) for r in reports.bill(session, MONTH, config.billing)]
    globex = api.client.get("/api/v1/bill", params={"month": MONTH}, headers=api.globex).json()
    rows = [r for r in report if r["customer"] == "globex"]
    assert globex == {
        "month": MONTH,
        "currency": config.billing.currency,
        "total": rows[0]["amount"],
        "rows": rows,
    }
    assert rows[0]["extra_gb"] > 0 and rows[0]["amount"] > 0
    everyone = api.client.get("/api/v1/bill", params={"month": MONTH}, headers=api.operator).json()
    assert everyone["rows"] == report
    assert everyone["total"] == sum(r["amount"] for r in report)


@pytest.mark.parametrize("path", ["/api/v1/usage", "/api/v1/bill"])
def test_a_bad_month_or_another_customer_is_422_naming_it(api: Api, path: str) -> None:
    for month in ("2026-13", "12-2026", "2026-1"):
        assert error_of(
            api.client.get(path, params={"month": month}, headers=api.acme), 422
        ).startswith("month: ")
    error = error_of(api.client.get(path, params={"customer": "globex"}, headers=api.acme), 422)
    assert error.startswith("customer: ")


def add_events(api: Api, count: int) -> None:
    actions = ("accept", "reject", "tempfail")
    with api.store.session() as session:
        acme, globex = admin.get_customer(session, "acme"), admin.get_customer(session, "globex")
        for i in range(count):
            customer = globex if i % 4 == 3 else acme
            accepted = i % 3 == 0
            session.add(
                event(
                    customer.id,
                    NOW - timedelta(minutes=count - i),
                    queue_id=f"Q{i:04d}",
                    identity=f"server:81.2.69.0/28#{i}",
                    action=actions[i % 3],
                    reason="ok" if accepted else "rate",
                    smtp_code=None if accepted else 451,
                    enhanced_code="" if accepted else "4.7.1",
                )
            )


def pages(api: Api, headers: dict[str, str], **params: Any) -> list[list[dict[str, Any]]]:
    """Every page, following ``next``."""
    found = []
    response = api.client.get("/api/v1/events", params=params, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        found.append(response.json()["events"])
        following = response.json()["next"]
        if following is None:
            return found
        response = api.client.get(following, headers=headers)


def test_events_are_the_callers_own_newest_first_paged_without_gaps(api: Api) -> None:
    add_events(api, 40)
    with api.store.session() as session:
        acme_id = admin.get_customer(session, "acme").id
        mine = session.scalars(
            select(Event.id).where(Event.customer_id == acme_id).order_by(Event.id.desc())
        ).all()
    got = pages(api, api.acme, limit=7)
    assert [len(p) for p in got] == [7, 7, 7, 7, 2]
    ids = [e["id"] for page in got for e in page]
    assert ids == list(mine)  # none twice, none missed, newest first
    first = got[0][0]
    assert set(first) == {
        "id",
        "at",
        "identity",
        "action",
        "reason",
        "smtp_code",
        "enhanced_code",
        "queue_id",
    }
    # New events while paging do not shift the pages that follow.
    response = api.client.get("/api/v1/events", params={"limit": 10}, headers=api.acme).json()
    add_events(api, 4)
    rest = api.client.get(response["next"], headers=api.acme).json()["events"]
    assert [e["id"] for e in rest] == list(mine[10:20])


def test_events_are_filtered_by_action_and_since(api: Api) -> None:
    add_events(api, 12)
    rejects = pages(api, api.acme, action="reject")
    assert {e["action"] for page in rejects for e in page} == {"reject"}
    assert all(e["smtp_code"] == 451 and e["enhanced_code"] == "4.7.1" for e in rejects[0])
    since = (NOW - timedelta(minutes=3)).isoformat()
    recent = pages(api, api.operator, since=since)[0]
    assert [e["queue_id"] for e in recent] == ["Q0011", "Q0010", "Q0009"]
    everyone = pages(api, api.operator, limit=500)[0]
    assert len(everyone) == 12
    assert len(pages(api, api.operator, customer="globex")[0]) == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"action": "maybe"}, "action"),
        ({"since": "yesterday"}, "since"),
        ({"before": "x"}, "before"),
        ({"customer": "globex"}, "customer"),
    ],
)
def test_bad_event_queries_are_422_naming_the_parameter(
    api: Api, params: dict[str, Any], field: str
) -> None:
    error = error_of(api.client.get("/api/v1/events", params=params, headers=api.acme), 422)
    assert error.startswith(f"{field}: ")
