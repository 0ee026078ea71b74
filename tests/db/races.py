"""Several ``osfmilter`` commands at the same moment, each in a process of its own.

Every process runs its command with one function of the command's check
(``checked_by``: module and name) slowed down: after its first look it
waits for the others to have looked too. Without a lock that serializes
the commands, every one of them finds nothing and all succeed; with it, a
process the database keeps from looking cannot arrive, the wait times out,
and it finds the first one's row.
"""

from __future__ import annotations

import importlib
import io
import multiprocessing
import threading
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout, suppress
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from osfmilter.cli import main

# (who ran it, exit status, stderr)
Outcome = tuple[str, int, str]


def _one(
    config: str,
    who: str,
    argv: list[str],
    checked_by: tuple[str, str],
    start: Barrier,
    checked: Barrier,
    results: Any,
) -> None:
    module = importlib.import_module(checked_by[0])
    look = getattr(module, checked_by[1])
    first = threading.Event()

    def look_then_wait(*args: Any) -> Any:
        found = look(*args)
        if not first.is_set():
            first.set()
            with suppress(threading.BrokenBarrierError):
                checked.wait(timeout=3)
        return found

    setattr(module, checked_by[1], look_then_wait)
    out, err = io.StringIO(), io.StringIO()
    start.wait()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(["--config", config, *argv])
    results.put((who, status, err.getvalue()))


def race(
    config: Path, commands: Sequence[tuple[str, list[str]]], checked_by: tuple[str, str]
) -> list[Outcome]:
    """Run ``commands`` ((who, argv) each) at once; every one's outcome."""
    context = multiprocessing.get_context("spawn")
    start, checked = context.Barrier(len(commands)), context.Barrier(len(commands))
    results = context.Queue()
    processes = [
        context.Process(
            target=_one, args=(str(config), who, argv, checked_by, start, checked, results)
        )
        for who, argv in commands
    ]
    for process in processes:
        process.start()
    outcomes: list[Outcome] = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    return outcomes
