"""Peak memory of the milter process for one 50 MB message, through the whole path.

Private Postfix -> osfmilter (SQLite, real clamd streaming) -> sink. The
figure is the growth of the milter's peak resident set (VmHWM) over its
value after a small warm-up message: what one big message costs on top of
an idle milter. Run from the repository root:

    .venv/bin/python bench/memory_bench.py [--size BYTES] [--no-clamd] [--dkim ALGORITHM]

``--dkim rsa-sha256`` (or ``ed25519-sha256``) gives the sender's domain a
signing key first, so the message is signed while it streams.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.clamd import ClamdProcess
from tests.harness.smtpclient import make_message, send
from tests.integration.conftest import message_id, running_relay

SERVER = "192.0.2.50"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=52_428_000)
    parser.add_argument("--no-clamd", action="store_true")
    parser.add_argument("--dkim", choices=["rsa-sha256", "ed25519-sha256"], default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="osfmem-", dir="/tmp"))
    scratch.chmod(0o755)
    clamd = None if args.no_clamd else ClamdProcess(scratch / "clamd")
    try:
        config = ""
        if clamd is not None:
            clamd.start()
            config = f'[clamav]\naddress = "{clamd.socket_path}"\ntimeout = 120\n'
        with running_relay(f"sqlite:///{scratch}/m.sqlite3", milter_config=config) as relay:
            relay.register("big", "paid", domains=("big.example",), servers=(SERVER,))
            if args.dkim:
                assert relay.cli("dkim", "keygen", "big.example", "--algorithm", args.dkim) == 0
            assert relay.milter.process is not None
            pid = relay.milter.process.pid
            warm = make_message("a@big.example", ["b@example.org"], "warm", "hi\r\n")
            assert send(
                relay.port, "a@big.example", ["b@example.org"], warm, client_addr=SERVER
            ).accepted
            idle_rss, idle_hwm = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
            big = make_message("a@big.example", ["b@example.org"], "big", "x\r\n", size=args.size)
            result = send(relay.port, "a@big.example", ["b@example.org"], big, client_addr=SERVER)
            assert result.accepted, result
            peak = status_kib(pid, "VmHWM")
            [relayed] = relay.sink.wait_for_message_id(message_id(big))
            signed = relayed.header("DKIM-Signature") is not None
            assert signed == bool(args.dkim), "signed" if signed else "not signed"
        growth = (peak - idle_hwm) / 1024
        print(
            f"message: {len(big):,} bytes, clamd: {'yes' if clamd else 'no'}, "
            f"DKIM: {args.dkim or 'off'}"
        )
        print(
            f"milter idle RSS {idle_rss / 1024:.1f} MiB, peak before {idle_hwm / 1024:.1f} MiB, "
            f"peak after {peak / 1024:.1f} MiB: growth {growth:.1f} MiB (target <= 32)"
        )
        return 0
    finally:
        if clamd is not None:
            clamd.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
