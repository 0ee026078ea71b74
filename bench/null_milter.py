"""The floor for bench/throughput.py: a pymilter milter that does nothing and accepts everything.

It is told every stage osfmilter is told (connect, HELO, MAIL, RCPT, the
headers, end of headers, the body), so the MTA sends the same milter
traffic, but every one of those callbacks is ``@Milter.noreply``: the MTA
does not wait for an answer. The stages osfmilter does not want either (DATA,
unknown commands) are ``@Milter.nocallback``. Only the end of the message,
which the protocol always answers, returns ACCEPT. It asks for no actions
(no header changes) and no macros beyond the MTA's defaults.

So the difference between this milter and osfmilter behind the same Postfix
is what osfmilter's own work costs: its decisions, its waits for replies at
MAIL, RCPT and every body chunk, and its bookkeeping.

    .venv/bin/python bench/null_milter.py inet:PORT@127.0.0.1
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import Milter

Callback = TypeVar("Callback", bound=Callable[..., int])


def noreply(callback: Callback) -> Callback:
    """``@Milter.noreply`` with its type kept (pymilter is untyped)."""
    return cast(Callback, Milter.noreply(callback))


def nocallback(callback: Callback) -> Callback:
    """``@Milter.nocallback`` with its type kept."""
    return cast(Callback, Milter.nocallback(callback))


class NullMilter(Milter.Base):  # type: ignore[misc]
    @noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return int(Milter.CONTINUE)

    @noreply
    def hello(self, hostname: str) -> int:
        return int(Milter.CONTINUE)

    @noreply
    def envfrom(self, mailfrom: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    @noreply
    def envrcpt(self, to: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    @noreply
    def header(self, field: str, value: str) -> int:
        return int(Milter.CONTINUE)

    @noreply
    def eoh(self) -> int:
        return int(Milter.CONTINUE)

    @noreply
    def body(self, chunk: bytes) -> int:
        return int(Milter.CONTINUE)

    @nocallback
    def data(self) -> int:
        return int(Milter.CONTINUE)

    @nocallback
    def unknown(self, cmd: str) -> int:
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        return int(Milter.ACCEPT)

    def abort(self) -> int:
        return int(Milter.CONTINUE)

    def close(self) -> int:
        return int(Milter.CONTINUE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A do-nothing milter that accepts everything.")
    parser.add_argument("socket", help="libmilter socket spec, e.g. inet:8894@127.0.0.1")
    parser.add_argument("--timeout", type=int, default=600, help="I/O timeout towards the MTA")
    args = parser.parse_args(argv)
    Milter.factory = NullMilter
    Milter.set_flags(0)  # no actions: nothing is ever changed
    Milter.runmilter("null-milter", args.socket, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
