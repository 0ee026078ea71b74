"""What osfmilter's own work costs per message, without Postfix or libmilter.

bench/throughput.py measures the whole path and takes minutes; this drives
the milter's session (the layer under the pymilter adapter) with the same
services `osfmilter run` builds, for the same message smtp-source sends, and
reports CPU milliseconds per message in seconds. Use it to see what a change
to the mail path buys before running the whole benchmark.

    .venv/bin/python bench/session_cost.py                    # SQLite, 2,000 messages
    .venv/bin/python bench/session_cost.py --database postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python bench/session_cost.py --profile 25       # cProfile, top 25 by own time
    .venv/bin/python bench/session_cost.py --threads 8        # 8 sessions at once

Every policy check is on (authorization, size, recipients, rate, monthly
volume, state) and SPF is asked of a DNS server on loopback, as in
throughput.py's configuration C. The database is emptied first (on
PostgreSQL: the schema's tables in the given database are recreated).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from throughput import CLIENT, MILTER_POLICY, SCANNED_DOMAIN, prepare_database

from osfmilter.config import config_from_dict
from osfmilter.milter.runner import build_services
from osfmilter.session import MilterSession, Services
from osfmilter.verdict import CONTINUE, Accept
from tests.harness.dnsserver import DnsServer
from tests.harness.spfzone import RELAY_V4, ZONE

DOMAIN = SCANNED_DOMAIN
HEADERS = (
    ("From", f"<bench@{DOMAIN}>"),
    ("To", "<rcpt@sink.example>"),
    ("Date", "Sun, 29 Nov 2026 08:00:00 +0000"),
    ("Message-Id", "<20261129080000.1@client.pass.example>"),
)
BODY = b"X" * 79 + b"\r\n"


def build(url: str, nameserver: str) -> Services:
    """The services of throughput.py's configuration C, on a fresh database."""
    prepare_database(url).dispose()
    config = tomllib.loads(MILTER_POLICY)
    config["database"] = {"url": url}
    config["spf"] = {"outbound_ips": [RELAY_V4], "nameservers": [nameserver]}
    return build_services(config_from_dict(config))


def one_message(services: Services, number: int, body: bytes) -> None:
    session = MilterSession(services)
    session.connect(CLIENT)
    session.hello("client.pass.example")
    queue_id = f"Q{number:09X}"
    assert session.mail(f"<bench@{DOMAIN}>", ["SIZE=10240"], "", queue_id) == CONTINUE
    assert session.rcpt("<rcpt@sink.example>", queue_id) == CONTINUE
    for name, value in HEADERS:
        session.header(name, value)
    session.end_of_headers()
    assert session.body(body) == CONTINUE
    reply = session.end_of_message(queue_id)
    assert isinstance(reply, Accept), reply
    session.close()


def run(services: Services, messages: int, threads: int, body: bytes) -> float:
    """CPU seconds of the whole process for `messages` messages in `threads` sessions."""

    def worker(first: int, count: int) -> None:
        for number in range(first, first + count):
            one_message(services, number, body)

    share = messages // threads
    if threads == 1:  # in this thread, where cProfile sees it
        started = time.process_time()
        worker(0, share)
        return time.process_time() - started
    workers = [threading.Thread(target=worker, args=(i * share, share)) for i in range(threads)]
    started = time.process_time()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: SQLite file)")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=10240, help="body bytes")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="profile the run and print the top N functions by own time",
    )
    args = parser.parse_args()
    body = (BODY * (args.size // len(BODY) + 1))[: args.size]
    with tempfile.TemporaryDirectory() as scratch, DnsServer(ZONE) as dns:
        url = args.database or f"sqlite:///{scratch}/bench.sqlite3"
        services = build(url, dns.nameserver)
        run(services, min(200, args.messages), 1, body)  # warm caches and the pool
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        wall = time.perf_counter()
        cpu = run(services, args.messages, args.threads, body)
        wall = time.perf_counter() - wall
        if profiler:
            profiler.disable()
        per = cpu / args.messages * 1000
        print(
            f"{args.messages} messages, {args.threads} thread(s), {url.split(':')[0]}: "
            f"{per:.3f} ms CPU and {wall / args.messages * 1000:.3f} ms wall per message"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
