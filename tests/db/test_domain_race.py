"""Domains of different customers never nest, however the adds race.

Each process looks for conflicting domains, then waits for the others to
have looked too before it inserts: without the lock that serializes adds
(PostgreSQL's advisory lock, SQLite's write lock) every one of them would
find nothing and all would be added. With it, the others cannot look
until the first has committed, so the wait times out and they find its
domain. Both backends.
"""

from __future__ import annotations

import io
import multiprocessing
import threading
from contextlib import redirect_stderr, redirect_stdout, suppress
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from osfmilter.cli import main
from osfmilter.storage import domains
from tests.db.conftest import Run

CUSTOMERS = ("c0", "c1", "c2", "c3")
# Each pair nests: x.sub.b.example is within sub.b.example, within b.example.
NESTED = ("b.example", "sub.b.example", "x.sub.b.example", "b.example")


def _add_domain(
    config: str, domain: str, customer: str, start: Barrier, checked: Barrier, results: Any
) -> None:
    """One ``domain add`` process; it waits after its check for the others' checks."""
    look = domains._nesting
    first = threading.Event()

    def look_then_wait(*args: Any) -> Any:
        found = look(*args)
        if not first.is_set():
            first.set()
            with suppress(threading.BrokenBarrierError):
                checked.wait(timeout=3)
        return found

    domains._nesting = look_then_wait  # type: ignore[assignment]
    out, err = io.StringIO(), io.StringIO()
    start.wait()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(
            ["--config", config, "domain", "add", domain, "--customer", customer, "--pending"]
        )
    results.put((customer, status, err.getvalue()))


@pytest.mark.parametrize("names", [NESTED, ("b.example",) * 4], ids=["nested", "same"])
def test_concurrent_nesting_adds_of_different_customers_one_succeeds(
    run: Run, db_url: str, tmp_path: Path, names: tuple[str, ...]
) -> None:
    for customer in CUSTOMERS:
        run("customer", "add", customer)
    config = tmp_path / "race.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    context = multiprocessing.get_context("spawn")
    start, checked = context.Barrier(len(CUSTOMERS)), context.Barrier(len(CUSTOMERS))
    results = context.Queue()
    processes = [
        context.Process(
            target=_add_domain, args=(str(config), name, customer, start, checked, results)
        )
        for name, customer in zip(names, CUSTOMERS, strict=True)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)

    winners = [customer for customer, status, _ in outcomes if status == 0]
    assert len(winners) == 1, outcomes
    for customer, status, err in outcomes:
        if customer not in winners:
            assert status == 2, outcomes
            assert err.startswith("osfmilter: error: domain ") and err.count("\n") == 1, err
            assert f"registered to another customer ({winners[0]!r})" in err, err
    listed = run("domain", "list")[1].splitlines()[1:]
    assert len(listed) == 1 and winners[0] in listed[0]
