"""What a SASL password costs: osfmilter hashing it, Dovecot checking it at each login.

``sasl add`` and ``sasl passwd`` hash once (osfmilter.passwords, argon2-cffi);
every AUTH makes Dovecot verify the hash with libsodium. Dovecot's side is
timed through ``doveadm pw -t``, which runs the same verification in a
process of its own: the figure includes starting doveadm, so it is an upper
bound on what one login costs Dovecot's auth process. Reported: CPU and wall
time per call, the median of the rounds, and the peak memory of one
verification (the maximum resident size of the doveadm child).

    .venv/bin/python bench/password_cost.py             # 5 rounds of 5 calls
    .venv/bin/python bench/password_cost.py --rounds 2  # quicker
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osfmilter import passwords

PASSWORD = "correct horse battery staple"  # noqa: S105 - the benchmark's input
DOVEADM = "/usr/bin/doveadm"


def time_calls(calls: int, call: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per call of ``call``, children's CPU included."""
    cpu_before = time.process_time() + _children_cpu()
    wall_before = time.perf_counter()
    for _ in range(calls):
        call()
    cpu = time.process_time() + _children_cpu() - cpu_before
    return cpu / calls, (time.perf_counter() - wall_before) / calls


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    stored = passwords.hash_password(PASSWORD)

    def doveadm_verify() -> None:
        subprocess.run(
            [DOVEADM, "pw", "-t", stored, "-p", PASSWORD], check=True, capture_output=True
        )

    def doveadm_start() -> None:  # the same process start, verifying nothing expensive
        subprocess.run(
            [DOVEADM, "pw", "-s", "PLAIN", "-p", PASSWORD], check=True, capture_output=True
        )

    cases = {
        "osfmilter hash_password": lambda: passwords.hash_password(PASSWORD),
        "osfmilter verify": lambda: passwords.verify(stored, PASSWORD),
        "doveadm pw -t (Dovecot's check)": doveadm_verify,
        "doveadm start alone (subtract)": doveadm_start,
    }
    print(f"{args.rounds} rounds of {args.calls} calls; median per call")
    print(f"{'case':34} {'CPU ms':>8} {'wall ms':>8}")
    for name, call in cases.items():
        rounds = [time_calls(args.calls, call) for _ in range(args.rounds)]
        cpu = statistics.median(r[0] for r in rounds) * 1000
        wall = statistics.median(r[1] for r in rounds) * 1000
        print(f"{name:34} {cpu:8.1f} {wall:8.1f}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"peak resident size of a doveadm verification: {peak_kib / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
