"""Monthly volume in the database: allowance, rollover, concurrency, inbound import."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from osfmilter.cli import main
from osfmilter.errors import TooLate
from osfmilter.events import EventRecord
from osfmilter.limits.volume import VolumeCharge
from osfmilter.storage import admin
from osfmilter.storage.schema import Event, MonthlyVolume
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION

MB = 1_000_000
GB = 1_000_000_000
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(acme: SqlStore) -> SqlStore:
    with acme.session() as s:
        admin.add_server(s, "192.0.2.10", "acme", TEST_REGISTRATION, NOW)
    return acme


def record(store: SqlStore) -> EventRecord:
    return EventRecord(
        at=NOW,
        node="n",
        queue_id="Q",
        stage="eom",
        client_ip="192.0.2.10",
        identity=None,
        envelope_sender="a@example.com",
        header_from_domain="example.com",
        rcpt_count=2,
        size=50 * MB,
        action="accept",
        reason="accepted",
        smtp_code=250,
        enhanced_code="2.0.0",
    )


def charge(store: SqlStore, month: str = "2026-11", volume: int = 100 * MB) -> VolumeCharge:
    with store.session() as s:
        customer_id = admin.get_customer(s, "acme").id
    return VolumeCharge(customer_id, "example.com", month, volume, True, GB, 2.0)


def test_free_domain_with_100_mb_inbound_sends_1_2_gb_and_no_more(store: SqlStore) -> None:
    store.record_inbound("2026-11", {(charge(store).customer_id, "example.com"): 100 * MB})
    results = [store.record_accept(record(store), charge(store)) for _ in range(13)]
    assert results[:12] == [None] * 12
    denied = results[12]
    assert denied is not None and (denied.used, denied.allowance) == (1200 * MB, 1200 * MB)
    with store.session() as s:
        # The refused message left no event and no volume behind.
        assert len(s.scalars(select(Event)).all()) == 12
    # A new month starts from zero (and its own inbound volume, here none).
    assert store.record_accept(record(store), charge(store, "2026-12", GB)) is None
    assert store.record_accept(record(store), charge(store, "2026-12", 1)) is not None


def test_parallel_accepts_never_exceed_the_allowance(store: SqlStore) -> None:
    results: list[object] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            outcome = store.record_accept(record(store), charge(store))
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(None) == 10
    with store.session() as s:
        row = s.scalars(select(MonthlyVolume).where(MonthlyVolume.direction == "outbound")).one()
        assert (row.bytes, row.messages) == (GB, 10)


def test_inbound_import_sets_volume_and_refuses_a_bad_file_whole(
    store: SqlStore, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    good = tmp_path / "good.csv"
    good.write_text("domain,month,bytes\nexample.com,2026-11,100000000\n")
    assert main(["--config", str(config), "inbound", "import", str(good)]) == 0
    assert main(["--config", str(config), "inbound", "import", str(good)]) == 0  # replaces
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "example.com,2026-10,5\nexample.com,2026-13,5\nnot a domain,2026-11,1\n"
        "example.com,2026-11,-3\nunknown.example,2026-11,7\n"
    )
    capsys.readouterr()
    assert main(["--config", str(config), "inbound", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    for line in ("line 2:", "line 3:", "line 4:"):
        assert line in err
    with store.session() as s:
        rows = s.scalars(select(MonthlyVolume).where(MonthlyVolume.direction == "inbound")).all()
        assert [(r.month, r.bytes) for r in rows] == [("2026-11", 100 * MB)]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("unknown.example,2026-11,7\n")
    assert main(["--config", str(config), "inbound", "import", str(unknown)]) == 2
    assert "line 1: unknown.example is not a scanned domain" in capsys.readouterr().err


def test_inbound_import_of_a_file_that_is_not_csv_is_one_line(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    huge = tmp_path / "huge.csv"
    huge.write_text(f"example.com,2026-11,1\nexample.com,2026-11,{'9' * 200_000}\n")
    assert main(["--config", str(config), "inbound", "import", str(huge)]) == 2
    assert capsys.readouterr().err == (
        f"osfmilter: error: {huge}, line 2: field larger than field limit (131072); "
        "nothing imported\n"
    )


def test_rate_slots_commit_with_the_accept_or_not_at_all(store: SqlStore, engine: Engine) -> None:
    from osfmilter.limits.rate import Bucket, Reservation
    from osfmilter.storage.rate import SqlRateLimiter
    from osfmilter.storage.schema import RateSlot
    from tests.fakes import FixedClock

    limiter = SqlRateLimiter(engine, FixedClock(), 300.0, 900.0)
    accepted = limiter.reserve("server:x", (Bucket("all", 10),))
    refused = limiter.reserve("server:x", (Bucket("all", 10),))
    assert isinstance(accepted, Reservation) and isinstance(refused, Reservation)
    assert (
        store.record_accept(
            record(store), charge(store), lambda c: limiter.commit_in(c, [accepted])
        )
        is None
    )
    over = charge(store, volume=10 * GB)
    assert (
        store.record_accept(record(store), over, lambda c: limiter.commit_in(c, [refused]))
        is not None
    )
    with store.session() as s:
        pending = dict(s.execute(select(RateSlot.reservation, RateSlot.pending)).all())
    assert pending == {accepted.id: False, refused.id: True}


def test_an_accept_too_late_for_the_mta_writes_nothing(store: SqlStore) -> None:
    """Asked after the wait for the database: the MTA may have given up meanwhile."""
    with pytest.raises(TooLate):
        store.record_accept(record(store), charge(store), in_time=lambda: False)
    assert store.record_accept(record(store), charge(store), in_time=lambda: True) is None
    with store.session() as s:
        assert len(s.scalars(select(Event)).all()) == 1
        assert [v.bytes for v in s.scalars(select(MonthlyVolume)).all()] == [100 * MB]


def test_an_accept_whose_batch_waited_past_the_deadline_writes_nothing(store: SqlStore) -> None:
    """Still in time when the job ran, too late once its statements were answered."""
    answers = iter([True])
    with pytest.raises(TooLate):
        store.record_accept(record(store), charge(store), in_time=lambda: next(answers, False))
    with store.session() as s:
        assert s.scalars(select(Event)).all() == []
        assert s.scalars(select(MonthlyVolume)).all() == []
