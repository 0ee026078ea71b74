"""What a real Sendmail 8.17 in front of osfmilter costs per SMTP command: TCP or unix socket.

Sendmail writes the macros of a milter command (SMFIC_MACRO) and the command
itself as two separate small writes. Over TCP, Nagle holds the second back
until the milter's kernel acknowledges the first, and the milter, which has
nothing to answer to a macro packet, acknowledges it only when its delayed
ACK timer fires (~40 ms on Linux). A unix socket has neither.

For each socket kind this starts ``osfmilter run`` (SQLite), a private
Sendmail built from contrib/sendmail/osfmilter.mc (tests/harness/sendmail.py;
run scripts/install-deps first) and a sink, then times, over ``--rounds``
messages from a registered server, the MAIL FROM reply and each of 51 RCPT TO
replies (the 51st is the free plan's 452). Medians go to stdout as markdown.

    .venv/bin/python bench/sendmail_latency.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))  # the tests' harness

from osfmilter.config import Config, RegistrationSection  # noqa: E402
from osfmilter.storage import admin  # noqa: E402
from osfmilter.storage.db import make_engine  # noqa: E402
from osfmilter.storage.domains import add_domain  # noqa: E402
from osfmilter.storage.store import SqlStore  # noqa: E402
from tests.harness.database import reset_database  # noqa: E402
from tests.harness.milter import MilterProcess  # noqa: E402
from tests.harness.sendmail import SendmailInstance  # noqa: E402
from tests.harness.sink import Sink  # noqa: E402
from tests.harness.smtpclient import Client  # noqa: E402

SENDER = "office@bench.example"
CLIENT = "127.0.0.2"
RECIPIENTS = 51


@contextmanager
def relay(scratch: Path, kind: str) -> Iterator[SendmailInstance]:
    """Milter on ``kind`` ("tcp" or "unix"), Sendmail in front of it, a sink behind it."""
    url = f"sqlite:///{scratch}/{kind}.sqlite3"
    engine = make_engine(url, Config().database.timeout)
    reset_database(engine)
    now = datetime.now(UTC)
    with SqlStore(engine).session() as session:
        admin.add_customer(session, "bench", "free", now)
        add_domain(session, "bench.example", "bench", now)
        admin.add_server(
            session, CLIENT, "bench", RegistrationSection(allow_non_global=True), now
        )  # 127.0.0.2
    engine.dispose()
    milter = MilterProcess(scratch / f"milter-{kind}", url)
    spec = milter.socket_spec
    if kind == "unix":
        path = scratch / f"run-{kind}" / "milter.sock"
        spec = f"unix:{path}"
        milter.config_path.write_text(
            milter.config_path.read_text().replace(
                f'socket = "{milter.socket_spec}"', f'socket = "{spec}"'
            )
        )
        milter.start_unix(path)
    else:
        milter.start()
    try:
        with (
            Sink() as sink,
            SendmailInstance(
                scratch / f"sendmail-{kind}", relay_port=sink.port, milter=spec
            ) as sendmail,
        ):
            yield sendmail
    finally:
        milter.stop()


def timed_transaction(port: int) -> tuple[float, list[float]]:
    """Seconds for MAIL FROM's reply and for each RCPT TO's; then RSET, no DATA."""
    with Client(source=CLIENT) as client:
        client.connect(port)
        start = time.perf_counter()
        assert client.mail(SENDER).code == 250
        mail = time.perf_counter() - start
        rcpts = []
        for n in range(RECIPIENTS):
            start = time.perf_counter()
            client.rcpt(f"user{n}@example.org")
            rcpts.append(time.perf_counter() - start)
        client.rset()
    return mail, rcpts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    # Not under /tmp: Sendmail refuses a unix socket below a world-writable
    # directory, sticky or not. .cache/ is the repository's ignored build area.
    cache = REPOSITORY / ".cache"
    cache.mkdir(exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="smbench-", dir=cache))
    rows = []
    try:
        for kind in ("tcp", "unix"):
            with relay(scratch, kind) as sendmail:
                timed_transaction(sendmail.port)  # warm-up: connections, caches
                mails, rcpts, totals = [], [], []
                for _ in range(args.rounds):
                    mail, each = timed_transaction(sendmail.port)
                    mails.append(mail)
                    rcpts.extend(each)
                    totals.append(mail + sum(each))
            rows.append(
                f"| {kind} | {statistics.median(mails) * 1000:.1f} "
                f"| {statistics.median(rcpts) * 1000:.1f} "
                f"| {max(rcpts) * 1000:.1f} "
                f"| {statistics.median(totals):.2f} |"
            )
            print(f"{kind}: done", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.rounds} transactions each, MAIL FROM + {RECIPIENTS} RCPT TO\n")
    print(
        "| milter socket | MAIL ms (median) | RCPT ms (median) | RCPT ms (max) "
        f"| MAIL + {RECIPIENTS} RCPT s (median) |"
    )
    print("|---|--:|--:|--:|--:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
