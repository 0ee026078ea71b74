"""``osfmilter server release | block | history``: operators and the state machine."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.model import IdentityKind
from osfmilter.reputation import IncidentKind, Rules
from osfmilter.storage.db import make_engine
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.schema import SmtpServer
from tests.db.conftest import Run
from tests.fakes import FixedClock

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


@pytest.fixture
def run(run: Run) -> Run:
    """The CLI, with customer acme's server 192.0.2.0/24 and login alice@example.com."""
    run("customer", "add", "acme")
    run("server", "add", "192.0.2.0/24", "--customer", "acme")
    run("sasl", "add", "alice@example.com", "--customer", "acme")
    return run


def test_block_release_and_history(run) -> None:
    status, out, _ = run(
        "server",
        "block",
        "192.0.2.7",
        "--by",
        "Jan de Vries",
        "--reason",
        "open relay, ticket 4711",
    )
    assert status == 0
    assert re.fullmatch(
        f"SMTP server 192.0.2.0/24: veilig → onveilig at {ISO} "
        "by Jan de Vries: open relay, ticket 4711\n",
        out,
    )
    assert "onveilig" in run("server", "list")[1]
    assert re.search(r"state:\s+onveilig", run("server", "show", "192.0.2.7")[1])

    status, out, _ = run("server", "release", "192.0.2.0/24", "--by", "piet", "--reason", "fixed")
    assert status == 0 and "onveilig → veilig" in out

    status, out, _ = run("server", "history", "192.0.2.7")
    assert status == 0
    lines = out.splitlines()
    assert re.fullmatch(f"SMTP server 192.0.2.0/24: veilig since {ISO}", lines[0])
    assert lines[1].split() == ["at", "change", "actor", "reason"]
    assert re.match(f"{ISO}  veilig → onveilig  Jan de Vries  open relay, ticket 4711$", lines[2])
    assert re.match(f"{ISO}  onveilig → veilig  piet          fixed$", lines[3])
    assert len(lines) == 4


def test_sasl_logins_by_name(run) -> None:
    status, out, _ = run(
        "server", "block", "alice@example.com", "--by", "jan", "--reason", "phished"
    )
    assert status == 0 and out.startswith("SASL login alice@example.com: veilig → onveilig")
    assert "onveilig" in run("sasl", "list")[1]
    assert "phished" in run("server", "history", "alice@example.com")[1]
    assert "no state changes recorded" in run("server", "history", "192.0.2.1")[1]


def test_a_release_of_veilig_changes_nothing(run) -> None:
    status, out, _ = run("server", "release", "192.0.2.1", "--by", "jan", "--reason", "x")
    assert (status, out) == (0, "SMTP server 192.0.2.0/24 is already veilig: nothing to release\n")
    assert "no state changes recorded" in run("server", "history", "192.0.2.1")[1]


def test_history_records_a_recovery_that_fell_due(run, db_url: str) -> None:
    # Registered a week ago, an incident three days ago; nobody has looked since.
    engine = make_engine(db_url, Config().database.timeout)
    clock = FixedClock(SystemClock().now() - timedelta(days=3))
    with engine.begin() as connection:
        server_id = connection.execute(select(SmtpServer.id)).scalar_one()
        connection.execute(
            update(SmtpServer).values(state_changed_at=clock.now() - timedelta(days=4))
        )
    store = ReputationStore(engine, clock, Rules.from_config(Config().reputation))
    store.record_incident(IdentityKind.SERVER, server_id, IncidentKind.VIRUS, "Eicar")
    due = (clock.now() + timedelta(hours=48)).isoformat(timespec="seconds")
    status, out, _ = run("server", "show", "192.0.2.1")
    assert status == 0 and re.search(r"last incident:\s+" + ISO, out)
    assert re.search(rf"veilig again at:\s+{re.escape(due)}", out)

    status, out, _ = run("server", "history", "192.0.2.1")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"SMTP server 192.0.2.0/24: veilig since {due}"
    assert "veilig → verdacht  system  virus detected: Eicar" in lines[2]
    assert lines[3].startswith(f"{due}  verdacht → veilig  system  no incident for 48 h")
    engine.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("server", "release", "bob@example.com", "--by", "jan", "--reason", "x"),
            "neither a registered SMTP server nor a SASL login",
        ),
        (("server", "block", "203.0.113.9", "--by", "jan", "--reason", "x"), "not covered"),
        (("server", "history", "nobody"), "neither a registered SMTP server"),
        (
            ("server", "block", "192.0.2.1", "--by", "jan", "--reason", "two\nlines"),
            "--reason must be one line",
        ),
        (("server", "block", "192.0.2.1", "--by", "", "--reason", "x"), "--by must be one line"),
        (
            ("server", "block", "192.0.2.1", "--by", "jan", "--reason", "x" * 401),
            "1 to 400 printable characters",
        ),
        (
            ("server", "block", "192.0.2.1", "--by", "system", "--reason", "x"),
            "reserved for automatic transitions",
        ),
    ],
)
def test_bad_input_is_one_line_and_status_2(run, args: tuple[str, ...], message: str) -> None:
    status, out, err = run(*args)
    assert status == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert "no state changes recorded" in run("server", "history", "192.0.2.1")[1]
    assert "veilig" in run("server", "list")[1] and "onveilig" not in run("server", "list")[1]


@pytest.mark.parametrize("missing", ["--by", "--reason"])
def test_by_and_reason_are_required(run, missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = {"--by": "jan", "--reason": "x"}
    del args[missing]
    with pytest.raises(SystemExit) as info:
        run("server", "block", "192.0.2.1", *[p for kv in args.items() for p in kv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert missing in err and err.count("\n") == 1
