"""What the notification outbox costs the mail path, per store call.

The milter writes a notice only on a state change, a volume threshold or a
customer's first refusal of a kind per day; every other message pays at
most an integer comparison. This times the store calls the session makes,
with and without a notice, single-threaded, so the difference is the
outbox write itself:

    .venv/bin/python bench/outbox_cost.py                 # SQLite on /dev/shm
    .venv/bin/python bench/outbox_cost.py --database postgresql+psycopg://postgres@127.0.0.1/test

On PostgreSQL the given database's tables are recreated.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.orm import Session

from osfmilter.config import Config
from osfmilter.events import EventRecord
from osfmilter.limits.volume import VolumeCharge
from osfmilter.model import Identity, IdentityKind, ServerState
from osfmilter.notify.kinds import NoticeType
from osfmilter.notify.notices import first_refusal
from osfmilter.storage import admin, contacts
from osfmilter.storage.db import make_engine
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION
from tests.harness.database import reset_database

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def timed(label: str, count: int, call: Callable[[int], object]) -> float:
    for i in range(50):  # warm up: pool, statement caches
        call(-1 - i)
    started = time.perf_counter()
    for i in range(count):
        call(i)
    micro = (time.perf_counter() - started) / count * 1e6
    print(f"{label:<58} {micro:8.0f} µs")
    return micro


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="")
    parser.add_argument("--count", type=int, default=1000)
    # tmpfs by default: on a disk every SQLite commit waits for its fsync, which
    # is the same with or without a notice and drowns the difference.
    shm = "/dev/shm"  # noqa: S108 - a directory of our own is made in it
    parser.add_argument("--dir", default=shm if Path(shm).is_dir() else None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        url = args.database or f"sqlite:///{tmp}/bench.sqlite3"
        engine = make_engine(url, Config().database.timeout)
        reset_database(engine)
        with Session(engine) as session, session.begin():
            customer = admin.add_customer(session, "acme", "free", NOW)
            contacts.add_contact(session, "acme", "ops@acme.example", NOW)
            contacts.add_webhook(session, "acme", "https://hooks.acme.example/", NOW)
            server = admin.add_server(session, "192.0.2.0/24", "acme", TEST_REGISTRATION, NOW)
            ids = customer.id, server.id
        identity = Identity(
            IdentityKind.SERVER, ids[1], "192.0.2.0/24", ids[0], "acme", "free",
            ServerState.VEILIG, frozenset(),
        )  # fmt: skip
        store = SqlStore(engine)
        event = EventRecord(
            at=NOW, node="n", queue_id="Q", stage="eom", client_ip="192.0.2.1",
            identity=identity, envelope_sender="a@example.com",
            header_from_domain="example.com", rcpt_count=1, size=1000, action="accept",
            reason="accepted", smtp_code=250, enhanced_code="2.0.0",
        )  # fmt: skip
        print(f"{url.split(':')[0]}, {args.count} calls each, µs per call (wall)")

        def accept(volume: int) -> Callable[[int], object]:
            def call(i: int) -> object:
                # A domain of its own per call: each starts its month at 0.
                domain = f"d{i}-{volume}.example"
                charge = VolumeCharge(ids[0], domain, "2026-11", volume, True, 1000, 0)
                return store.record_accept(event, charge)

            return call

        plain = timed("accept, below 80 % (every message)", args.count, accept(100))
        crossing = timed(
            "accept that reaches 80 % and 100 % (two notices)", args.count, accept(1000)
        )
        refused = replace(event, action="reject", reason="foreign_sender")
        notice = first_refusal(
            NoticeType.REFUSAL_FOREIGN_DOMAIN,
            customer_id=ids[0], identity=identity.label, at=NOW, details={"domain": "x.example"},
        )  # fmt: skip
        bare = timed("refusal, no notice", args.count, lambda i: store.record(refused))
        first = timed(
            "refusal, first of its kind today (one notice)",
            args.count,
            lambda i: store.record(refused, [replace(notice, id=f"{i}", dedup_key=f"k{i}")]),
        )
        again = timed(
            "refusal, its kind told today already (remembered)",
            args.count,
            lambda i: store.record(refused, [replace(notice, id=f"a{i}", dedup_key="k0")]),
        )
        print(f"a notice costs {crossing - plain:.0f} µs (two, on the accept), "
              f"{first - bare:.0f} µs (one, on a refusal); "
              f"a remembered one {again - bare:+.0f} µs")  # fmt: skip
        engine.dispose()


if __name__ == "__main__":
    main()
