"""``osfmilter dkim``: keys of verified domains only, their files, rotation, and the DNS check."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from osfmilter.dkim.keys import KeyFiles
from osfmilter.errors import StorageError
from osfmilter.storage import dkim as storage
from osfmilter.storage.schema import DkimKey, ScannedDomain
from osfmilter.storage.store import SqlStore
from tests.db.conftest import Run
from tests.harness.dnsserver import DnsServer


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def dkim(run: Run, key_dir: Path, acme: SqlStore) -> Run:
    """The CLI with its key directory; acme's example.com is verified, pending.example pending."""
    with acme.session() as s:
        customer = s.scalars(select(ScannedDomain)).one().customer
        s.add(
            ScannedDomain(
                customer=customer,
                domain="pending.example",
                created_at=datetime.now(UTC),
                state="pending",
                verification_token="t" * 32,
            )
        )

    def dkim(*args: str, extra: str = "") -> tuple[int, str, str]:
        return run("dkim", *args, config_text=f'[dkim]\nkey_dir = "{key_dir}"\n{extra}')

    return dkim


def rows(store: SqlStore) -> list[tuple[str, str, str]]:
    with store.session() as s:
        keys = s.scalars(select(DkimKey).order_by(DkimKey.id)).all()
        return [(k.selector, k.algorithm, k.state) for k in keys]


def this_month() -> str:
    return f"osf{datetime.now(UTC):%Y%m}"


def test_keygen_writes_the_key_and_prints_the_record(
    dkim: Run, acme: SqlStore, key_dir: Path
) -> None:
    status, out, err = dkim("keygen", "Example.COM")
    selector = this_month()
    assert status == 0, err
    assert f"{selector}._domainkey.example.com" in out
    assert "v=DKIM1; k=rsa; p=MII" in out
    assert f"copy {key_dir} to every relay node" in out
    assert rows(acme) == [(selector, "rsa-sha256", "active")]
    path = key_dir / f"{selector}._domainkey.example.com.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    KeyFiles(key_dir).load("example.com", selector)  # a key that loads


def test_keygen_ed25519_with_a_selector(dkim: Run, acme: SqlStore) -> None:
    status, out, _ = dkim(
        "keygen", "example.com", "--selector", "Mail1", "--algorithm", "ed25519-sha256"
    )
    assert status == 0
    assert "mail1._domainkey.example.com" in out and "v=DKIM1; k=ed25519; p=" in out
    assert rows(acme) == [("mail1", "ed25519-sha256", "active")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keygen", "pending.example"), "domain pending.example is pending, not verified"),
        (("keygen", "unknown.example"), "domain unknown.example is not registered"),
        (("keygen", "not a domain"), "not a valid domain name"),
        (("keygen", "example.com", "--selector", "../x"), "not a valid selector"),
        (("rotate", "example.com"), "has no active DKIM key to rotate"),
        (("rotate", "pending.example"), "is pending, not verified"),
        (("show", "unknown.example"), "is not registered"),
        (("check", "example.com"), "has no DKIM key to check"),
    ],
)
def test_bad_input_is_one_line_status_2_and_changes_nothing(
    dkim: Run, acme: SqlStore, key_dir: Path, args: tuple[str, ...], message: str
) -> None:
    status, out, err = dkim(*args)
    assert status == 2, (out, err)
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert rows(acme) == []
    assert not key_dir.exists() or list(key_dir.iterdir()) == []


def test_an_unknown_algorithm_is_a_usage_error(
    dkim: Run, acme: SqlStore, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        dkim("keygen", "example.com", "--algorithm", "dsa")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "'dsa' is not one of rsa-sha256, ed25519-sha256" in err and err.count("\n") == 1
    assert rows(acme) == []


def test_a_second_keygen_is_refused_and_points_at_rotate(
    dkim: Run, acme: SqlStore, key_dir: Path
) -> None:
    assert dkim("keygen", "example.com")[0] == 0
    files = sorted(key_dir.iterdir())
    status, _, err = dkim("keygen", "example.com", "--selector", "other")
    assert status == 2 and "already has an active DKIM key" in err and "dkim rotate" in err
    assert sorted(key_dir.iterdir()) == files and len(rows(acme)) == 1


def test_keygen_whose_file_cannot_be_written_adds_nothing(
    dkim: Run, acme: SqlStore, key_dir: Path
) -> None:
    key_dir.parent.mkdir(parents=True, exist_ok=True)
    key_dir.write_text("a file where the directory should be")
    status, _, err = dkim("keygen", "example.com")
    assert status == 2 and "cannot make key directory" in err and err.count("\n") == 1
    assert rows(acme) == []


def test_keygen_whose_commit_fails_leaves_no_file(dkim: Run, acme: SqlStore, key_dir: Path) -> None:
    def refuse(session: Session) -> None:
        raise StorageError("the database refused the commit")

    event.listen(Session, "before_commit", refuse)
    try:
        status, _, err = dkim("keygen", "example.com")
    finally:
        event.remove(Session, "before_commit", refuse)
    assert status == 1 and "refused the commit" in err and err.count("\n") == 1
    assert rows(acme) == []
    assert list(key_dir.iterdir()) == []  # it was written, then removed


def test_rotate_whose_commit_fails_keeps_the_old_key_and_file(
    dkim: Run, acme: SqlStore, key_dir: Path
) -> None:
    dkim("keygen", "example.com", "--selector", "one")

    def refuse(session: Session) -> None:
        raise StorageError("the database refused the commit")

    event.listen(Session, "before_commit", refuse)
    try:
        status, _, _ = dkim("rotate", "example.com", "--selector", "two")
    finally:
        event.remove(Session, "before_commit", refuse)
    assert status == 1
    assert rows(acme) == [("one", "rsa-sha256", "active")]
    assert [p.name for p in key_dir.iterdir()] == ["one._domainkey.example.com.pem"]


def test_keygen_does_not_replace_an_orphan_file(dkim: Run, acme: SqlStore, key_dir: Path) -> None:
    KeyFiles(key_dir).write("example.com", this_month(), b"someone's key")
    status, _, err = dkim("keygen", "example.com")
    assert status == 2 and "already exists" in err
    assert rows(acme) == []
    assert KeyFiles(key_dir).path("example.com", this_month()).read_bytes() == b"someone's key"


def test_show_json_names_the_active_key_and_every_published_one(dkim: Run) -> None:
    dkim("keygen", "example.com", "--selector", "one")
    status, out, _ = dkim("show", "example.com", "--json")
    assert status == 0
    document = json.loads(out)
    assert document["selector"] == "one"
    assert document["name"] == "one._domainkey.example.com"
    assert document["record"].startswith("v=DKIM1; k=rsa; p=MII")
    [key] = document["keys"]
    assert key["state"] == "active" and key["retire_after"] is None
    assert key["record"] == document["record"]


def test_show_without_keys(dkim: Run) -> None:
    status, out, _ = dkim("show", "example.com")
    assert status == 0 and "no DKIM key" in out
    document = json.loads(dkim("show", "example.com", "--json")[1])
    assert document["selector"] is None and document["keys"] == []


def test_rotate_retires_the_old_key_for_the_grace_period(
    dkim: Run, acme: SqlStore, key_dir: Path
) -> None:
    dkim("keygen", "example.com", "--selector", "one")
    status, out, err = dkim(
        "rotate", "example.com", "--algorithm", "ed25519-sha256", extra="rotation_grace_days = 3\n"
    )
    new = this_month()
    assert status == 0, err
    assert f"{new}._domainkey.example.com" in out and "one._domainkey.example.com" in out
    assert "k=ed25519" in out and "k=rsa" in out and "retiring" in out
    assert rows(acme) == [("one", "rsa-sha256", "retiring"), (new, "ed25519-sha256", "active")]
    with acme.session() as s:
        retiring = s.scalars(select(DkimKey).where(DkimKey.selector == "one")).one()
        assert retiring.retire_after is not None
        grace = retiring.retire_after - datetime.now(UTC)
        assert timedelta(days=3) - timedelta(minutes=1) < grace <= timedelta(days=3)
    assert {p.name for p in key_dir.iterdir()} == {
        "one._domainkey.example.com.pem",
        f"{new}._domainkey.example.com.pem",
    }
    document = json.loads(dkim("show", "example.com", "--json")[1])
    assert document["selector"] == new
    assert [(k["selector"], k["state"]) for k in document["keys"]] == [
        (new, "active"),
        ("one", "retiring"),
    ]
    assert document["keys"][1]["retire_after"] is not None
    text = dkim("show", "example.com")[1]
    assert "one  rsa-sha256  retiring until" in text


def test_rotate_picks_the_next_free_default_selector(dkim: Run, acme: SqlStore) -> None:
    dkim("keygen", "example.com")
    dkim("rotate", "example.com")
    dkim("rotate", "example.com")
    month = this_month()
    assert [r[0] for r in rows(acme)] == [month, f"{month}b", f"{month}c"]


def test_rotate_removes_retiring_keys_past_their_grace(
    dkim: Run, acme: SqlStore, key_dir: Path
) -> None:
    dkim("keygen", "example.com", "--selector", "one")
    dkim("rotate", "example.com", "--selector", "two")
    with acme.session() as s:
        old = s.scalars(select(DkimKey).where(DkimKey.selector == "one")).one()
        old.retire_after = datetime.now(UTC) - timedelta(seconds=1)
    # Past its grace, the key is no longer published ...
    assert [
        k["selector"] for k in json.loads(dkim("show", "example.com", "--json")[1])["keys"]
    ] == ["two"]
    # ... and the next rotation removes its row and its file, and says so.
    status, out, _ = dkim("rotate", "example.com", "--selector", "three")
    assert status == 0
    assert "removed DKIM key one of example.com" in out
    assert rows(acme) == [("two", "rsa-sha256", "retiring"), ("three", "rsa-sha256", "active")]
    assert {p.name for p in key_dir.iterdir()} == {
        "two._domainkey.example.com.pem",
        "three._domainkey.example.com.pem",
    }


def test_rotate_keeps_the_algorithm_unless_told(dkim: Run, acme: SqlStore) -> None:
    dkim("keygen", "example.com", "--selector", "one", "--algorithm", "ed25519-sha256")
    assert dkim("rotate", "example.com", "--selector", "two")[0] == 0
    assert dkim("rotate", "example.com", "--selector", "three", "--algorithm", "rsa-sha256")[0] == 0
    assert [r[1] for r in rows(acme)] == ["ed25519-sha256", "ed25519-sha256", "rsa-sha256"]


def test_rotate_refuses_a_selector_in_use(dkim: Run, acme: SqlStore) -> None:
    dkim("keygen", "example.com", "--selector", "one")
    status, _, err = dkim("rotate", "example.com", "--selector", "one")
    assert status == 2 and "selector one is already used by example.com" in err
    assert rows(acme) == [("one", "rsa-sha256", "active")]


def test_storage_published_and_active_keys(acme: SqlStore) -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    with acme.session() as s:
        first = storage.create_key(s, "example.com", None, "rsa-sha256", "AAA", now)
        assert first.selector == "osf202612"
        rotation = storage.rotate(
            s, "example.com", None, "ed25519-sha256", "BBB", now, timedelta(days=7)
        )
        assert rotation.new.selector == "osf202612b" and rotation.removed == []
        active = storage.active_key(s, "example.com")
        assert active is not None and active.selector == "osf202612b"
        published = storage.published_keys(s, "example.com", now + timedelta(days=6))
        assert [k.selector for k in published] == ["osf202612b", "osf202612"]
        later = storage.published_keys(s, "example.com", now + timedelta(days=7))
        assert [k.selector for k in later] == ["osf202612b"]


def quoted(text: str) -> str:
    return " ".join(f'"{text[i : i + 255]}"' for i in range(0, len(text), 255))


@pytest.fixture
def published(dkim: Run) -> dict[str, str]:
    """Three keys of example.com (two retiring, one active): selector -> record."""
    dkim("keygen", "example.com", "--selector", "good")
    dkim("rotate", "example.com", "--selector", "absent", "--algorithm", "ed25519-sha256")
    dkim("rotate", "example.com", "--selector", "changed", "--algorithm", "rsa-sha256")
    document = json.loads(dkim("show", "example.com", "--json")[1])
    return {k["selector"]: k["record"] for k in document["keys"]}


def zone(records: dict[str, str]) -> str:
    head = "example.com. 300 IN SOA ns.example.com. host.example.com. 1 3600 600 86400 60\n"
    return head + "".join(
        f"{name}._domainkey.example.com. 300 IN TXT {quoted(text)}\n"
        for name, text in records.items()
    )


@contextmanager
def nameserver(records: dict[str, str]) -> Iterator[str]:
    """The [spf] section that sends the lookups to a server publishing ``records``."""
    with DnsServer(zone(records)) as dns:
        yield f'[spf]\nnameservers = ["{dns.nameserver}"]\ntimeout = 2.0\n'


def test_check_passes_when_every_published_key_matches(
    dkim: Run, published: dict[str, str]
) -> None:
    with nameserver(published) as spf:
        status, out, _ = dkim("check", "example.com", extra=spf)
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 3 and all(": matches: " in line for line in lines)
    assert lines[0].startswith("changed (active)")


def test_check_names_the_missing_and_the_different_records(
    dkim: Run, published: dict[str, str]
) -> None:
    served = {
        "good": published["good"],
        "changed": published["good"].replace("k=rsa", "k=rsa; t=y"),
    }
    with nameserver(served) as spf:
        status, out, _ = dkim("check", "example.com", extra=spf)
    assert status == 1
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["good"].startswith("(retiring): matches:")
    assert lines["absent"] == (
        "(retiring): missing: no TXT record at absent._domainkey.example.com"
    )
    assert lines["changed"].startswith("(active): different: ")
    assert "publishes another key" in lines["changed"]


def test_check_reports_dns_that_does_not_answer(dkim: Run, published: dict[str, str]) -> None:
    silent = '[spf]\nnameservers = ["127.0.0.1:9"]\ntimeout = 0.3\n'
    status, out, _ = dkim("check", "example.com", extra=silent)
    assert status == 1
    assert out.count(": dns-problem: ") == 3


def test_removing_a_domain_removes_its_key_files_and_frees_its_selector(
    run: Run, tmp_path: Path
) -> None:
    assert run("customer", "add", "acme")[0] == 0
    assert run("domain", "add", "gone.example", "--customer", "acme")[0] == 0
    assert run("dkim", "keygen", "gone.example", "--selector", "s1")[0] == 0
    [key_file] = (tmp_path / "dkim").glob("*gone.example.pem")
    status, out, _ = run("domain", "remove", "gone.example")
    assert status == 0 and "DKIM key files (s1) were removed" in out and "other relay" in out
    assert not key_file.exists()
    assert run("domain", "add", "gone.example", "--customer", "acme")[0] == 0
    assert run("dkim", "keygen", "gone.example", "--selector", "s1")[0] == 0
