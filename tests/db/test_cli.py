"""The administration CLI: one-line errors, exit status 2, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from osfmilter.cli import main
from osfmilter.config import CONFIG_ENV, Config
from osfmilter.storage.db import Access, make_engine, schema_status, upgrade
from tests.db.conftest import ALLOW_NON_GLOBAL


def test_register_and_list(run) -> None:
    assert run("customer", "add", "acme", "--plan", "paid")[0] == 0
    assert run("domain", "add", "Example.COM.", "--customer", "acme")[0] == 0
    assert run("server", "add", "192.0.2.0/24", "--customer", "acme")[0] == 0
    assert run("server", "add", "2001:db8::10", "--customer", "acme")[0] == 0
    assert run("sasl", "add", "alice", "--customer", "acme")[0] == 0
    status, out, _ = run("customer", "list")
    assert status == 0 and "acme" in out and "paid" in out
    assert "example.com" in run("domain", "list")[1]
    out = run("server", "list")[1]
    assert "192.0.2.0/24" in out and "2001:db8::10/128" in out and "veilig" in out
    assert "alice" in run("sasl", "list", "--customer", "acme")[1]
    status, out, _ = run("server", "show", "192.0.2.77")
    assert status == 0 and "192.0.2.0/24" in out and "acme" in out and "veilig" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("server", "add", "not-an-ip", "--customer", "acme"), "not an IP address"),
        (("server", "add", "0.0.0.0/0", "--customer", "acme"), "too broad"),
        (("server", "add", "192.0.2.9/24", "--customer", "acme"), "host bits"),
        (("server", "add", "192.0.2.1", "--customer", "nobody"), "no customer named 'nobody'"),
        (("server", "add", "192.0.2.0/24", "--customer", "acme"), "already registered"),
        (("server", "add", "192.0.2.64/26", "--customer", "other"), "overlaps 192.0.2.0/24"),
        (("domain", "add", "exa mple.com", "--customer", "acme"), "not a valid domain"),
        (("domain", "add", "example.com", "--customer", "other"), "already registered"),
        (("customer", "add", "acme"), "already exists"),
        (("customer", "add", "bad name!"), "not a valid customer name"),
        (("customer", "remove", "acme"), "remove them first"),
        (("sasl", "add", "two words", "--customer", "acme"), "not a valid SASL login"),
        (("server", "show", "203.0.113.1"), "not covered"),
        (("server", "remove", "203.0.113.0/24"), "not registered"),
    ],
)
def test_bad_input_is_one_line_and_status_2(run, args: tuple[str, ...], message: str) -> None:
    run("customer", "add", "acme")
    run("customer", "add", "other")
    run("domain", "add", "example.com", "--customer", "acme")
    run("server", "add", "192.0.2.0/24", "--customer", "acme")
    before = run("server", "list")[1], run("domain", "list")[1], run("customer", "list")[1]
    status, _, err = run(*args)
    assert status == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    after = run("server", "list")[1], run("domain", "list")[1], run("customer", "list")[1]
    assert after == before


STRICT = "[registration]\nallow_non_global = false\n"


@pytest.mark.parametrize(
    ("network", "reason"),
    [
        ("10.0.0.0/16", "10.0.0.0/16 is private-use (RFC 1918)"),
        ("100.64.0.0/16", "100.64.0.0/16 is carrier-grade NAT"),
        ("169.254.0.0/16", "169.254.0.0/16 is link-local"),
        ("127.0.0.0/16", "127.0.0.0/16 is loopback"),
        ("172.17.0.1", "172.17.0.1/32 is private-use (RFC 1918)"),
        ("fe80::/64", "fe80::/64 is link-local"),
        ("255.255.255.255", "255.255.255.255/32 is limited broadcast"),
        ("64:ff9b::/96", "64:ff9b::/96 is the NAT64 well-known prefix"),
        ("64:ff9b:1::/48", "64:ff9b:1::/48 is local-use NAT64"),
        ("2002:c000:204::/48", "2002:c000:204::/48 is 6to4"),
        ("203.0.0.0/16", "203.0.0.0/16 includes 203.0.113.0/24"),
    ],
)
def test_a_non_global_network_is_refused_by_default(run, network: str, reason: str) -> None:
    run("customer", "add", "acme")
    status, out, err = run("server", "add", network, "--customer", "acme", config_text=STRICT)
    assert status == 2 and out == ""
    assert err.startswith(f"osfmilter: error: {reason}") and "--allow-non-global" in err
    assert err.count("\n") == 1
    assert run("server", "list")[1].strip() == "server  customer  state"


def test_a_non_global_network_can_be_registered_on_purpose(run) -> None:
    run("customer", "add", "acme")
    status, _, err = run(
        "server",
        "add",
        "172.17.0.1",
        "--customer",
        "acme",
        "--allow-non-global",
        config_text=STRICT,
    )
    assert (status, err) == (0, "")
    # The flag is for that one registration; the config still refuses the next.
    assert run("server", "add", "10.1.0.0/16", "--customer", "acme")[0] == 2
    assert (
        run("server", "add", "10.1.0.0/16", "--customer", "acme", config_text=ALLOW_NON_GLOBAL)[0]
        == 0
    )
    assert "172.17.0.1/32" in run("server", "list")[1]


def test_a_global_network_needs_no_permission(run) -> None:
    run("customer", "add", "acme")
    assert run("server", "add", "193.0.0.0/24", "--customer", "acme", config_text=STRICT) == (
        0,
        "SMTP server 193.0.0.0/24 added to acme\n",
        "",
    )
    assert run("server", "add", "2a00:1450:4001::/48", "--customer", "acme")[0] == 0


def test_remove(run) -> None:
    run("customer", "add", "acme")
    run("server", "add", "192.0.2.1", "--customer", "acme")
    run("domain", "add", "example.com", "--customer", "acme")
    assert run("server", "remove", "192.0.2.1/32")[0] == 0
    assert run("domain", "remove", "example.com")[0] == 0
    assert run("customer", "remove", "acme")[0] == 0
    assert "acme" not in run("customer", "list")[1]


def test_usage_error_is_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["server", "add"])
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_unreachable_database_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text('[database]\nurl = "postgresql://osf:s3cret@127.0.0.1:1/none"\ntimeout = 2\n')
    status = main(["--config", str(config), "customer", "list"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("osfmilter: database error:")
    assert err.count("\n") == 1 and "s3cret" not in err


def test_bad_config_is_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text("[milter]\nsockett = 'x'\n")
    assert main(["--config", str(config), "check-config"]) == 2
    assert "unknown key 'milter.sockett'" in capsys.readouterr().err


# Every command that only looks; none may create, upgrade or write a database.
READ_ONLY_COMMANDS = [
    ("customer", "list"),
    ("domain", "list"),
    ("server", "list"),
    ("server", "show", "192.0.2.1"),
    ("server", "history", "192.0.2.1"),
    ("sasl", "list"),
    ("report", "volume"),
    ("report", "bill"),
    ("report", "refused"),
    ("report", "states"),
    ("db", "status"),
    ("db", "purge", "--older-than", "400d", "--dry-run"),
]


@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_never_creates_the_database(
    args: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No --config: the default database, here under $STATE_DIRECTORY, not
    # /var/lib/osfmilter.
    state = tmp_path / "state"
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    status = main(list(args))
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{state}/osfmilter.sqlite3 does not exist" in err and "--config" in err
    assert not state.exists()  # neither the file nor its directory


# Every command that changes a row that must already be there: none may
# create a database to find it missing in.
EXISTING_ROW_COMMANDS = [
    ("customer", "plan", "acme", "paid"),
    ("customer", "remove", "acme"),
    ("domain", "remove", "example.com"),
    ("server", "remove", "192.0.2.0/24"),
    ("server", "release", "192.0.2.1", "--by", "ops", "--reason", "fixed"),
    ("server", "block", "192.0.2.1", "--by", "ops", "--reason", "spam"),
    ("sasl", "remove", "alice"),
    ("db", "purge", "--older-than", "400d"),
]


@pytest.mark.parametrize("args", EXISTING_ROW_COMMANDS, ids=" ".join)
def test_a_command_on_existing_rows_never_creates_the_database(
    args: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    url = f"sqlite:///{state}/osfmilter.sqlite3"
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    status = main(["--config", str(config), *args])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert err.startswith(f"osfmilter: error: database {url} does not exist")
    assert not state.exists()  # neither the file nor its directory


@pytest.mark.parametrize("revision", [None, "0006"])
@pytest.mark.parametrize("args", READ_ONLY_COMMANDS[:3], ids=" ".join)
def test_a_read_only_command_never_upgrades_the_schema(
    args: tuple[str, ...],
    revision: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = make_engine(url, Config().database.timeout)
    if revision:
        upgrade(engine, revision)
    else:
        with engine.connect():  # an empty file
            pass
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    status = main(["--config", str(config), *args])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert f"{url} is at schema revision {revision or 'none'}" in err
    assert "osfmilter db upgrade" in err
    assert schema_status(engine)[0] == revision
    engine.dispose()


def test_db_status_reports_a_schema_behind_without_upgrading(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    engine = make_engine(url, Config().database.timeout)
    upgrade(engine, "0006")
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    assert main(["--config", str(config), "db", "status"]) == 1
    assert schema_status(engine)[0] == "0006"
    engine.dispose()


def test_a_read_only_engine_refuses_writes(db_url: str) -> None:
    engine = make_engine(db_url, Config().database.timeout, Access.READ_ONLY)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM customers")).scalar() == 0
        with pytest.raises(DBAPIError, match=r"read-only|readonly"), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO customers (name, plan, created_at)"
                    " VALUES ('x', 'free', '2026-12-02')"
                )
            )
    finally:
        engine.dispose()


def test_a_writing_command_still_creates_the_embedded_database(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = tmp_path / "state"
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    assert main(["customer", "add", "acme"]) == 0
    assert (state / "osfmilter.sqlite3").is_file()
    assert main(["customer", "list"]) == 0


@pytest.mark.parametrize(
    ("revision", "message"),
    [
        ("nosuchrev", "db upgrade 'nosuchrev': Can't locate revision identified by 'nosuchrev'"),
        ("-1", "db upgrade '-1': Relative revision -1 didn't produce 1 migrations"),
        ("", "db upgrade: the revision is empty"),
    ],
)
def test_db_upgrade_to_an_unknown_revision_is_one_line(run, revision: str, message: str) -> None:
    status, out, err = run("db", "upgrade", revision)
    assert (status, out) == (2, "")
    assert err.startswith(f"osfmilter: error: {message}") and err.count("\n") == 1


def test_a_database_url_with_a_bad_port_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text('[database]\nurl = "postgresql://u:s3cret@h:abc/db"\n')
    config.chmod(0o644)  # world-readable: the password check parses the URL first
    assert main(["--config", str(config), "customer", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("osfmilter: error: ") and "key 'database.url'" in err
    assert err.count("\n") == 1 and "s3cret" not in err


def test_a_database_directory_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    url = f"sqlite:///{tmp_path}/file/state/osfmilter.sqlite3"
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    assert main(["--config", str(config), "customer", "add", "acme"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"osfmilter: error: database {url}: cannot create {tmp_path}/file/state: Not a directory\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("db", "purge", "--older-than", "999999d", "--dry-run"), "at most 36500d"),
        (("report", "refused", "--since", "999999d"), "at most 36500d"),
        (("report", "refused", "--since", "9999-12-31T23:59:59-05:00"), "out of range"),
    ],
)
def test_a_time_out_of_range_is_one_line(run, args: tuple[str, ...], message: str) -> None:
    status, out, err = run(*args)
    assert (status, out) == (2, "")
    assert err.startswith("osfmilter: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("limit", ["99999999999999999999", "1000001", "²"])
def test_a_limit_out_of_range_is_one_line(
    run, limit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        run("report", "refused", "--limit", limit)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert "is not a whole number from 1 to 1000000" in err


def test_a_reader_that_goes_away_is_status_1_without_a_traceback(
    run, db_url: str, tmp_path: Path
) -> None:
    """``osfmilter report bill | head -0``: the pipe is closed before the report is written."""
    run("customer", "add", "acme")
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "osfmilter", "--config", str(config), "report", "bill"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (1, "")
