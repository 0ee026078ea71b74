"""Domains of different customers never nest, however the adds race.

Each process looks for conflicting domains, then waits for the others to
have looked too before it inserts: without the lock that serializes adds
(PostgreSQL's advisory lock, SQLite's write lock) every one of them would
find nothing and all would be added. With it, the others cannot look
until the first has committed, so the wait times out and they find its
domain. Both backends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.db.conftest import Run
from tests.db.races import race

CUSTOMERS = ("c0", "c1", "c2", "c3")
# Each pair nests: x.sub.b.example is within sub.b.example, within b.example.
NESTED = ("b.example", "sub.b.example", "x.sub.b.example", "b.example")


@pytest.mark.parametrize("names", [NESTED, ("b.example",) * 4], ids=["nested", "same"])
def test_concurrent_nesting_adds_of_different_customers_one_succeeds(
    run: Run, db_url: str, tmp_path: Path, names: tuple[str, ...]
) -> None:
    for customer in CUSTOMERS:
        run("customer", "add", customer)
    config = tmp_path / "race.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    commands = [
        (customer, ["domain", "add", name, "--customer", customer, "--pending"])
        for name, customer in zip(names, CUSTOMERS, strict=True)
    ]
    outcomes = race(config, commands, ("osfmilter.storage.domains", "_nesting"))

    winners = [customer for customer, status, _ in outcomes if status == 0]
    assert len(winners) == 1, outcomes
    for customer, status, err in outcomes:
        if customer not in winners:
            assert status == 2, outcomes
            assert err.startswith("osfmilter: error: domain ") and err.count("\n") == 1, err
            assert f"registered to another customer ({winners[0]!r})" in err, err
    listed = run("domain", "list")[1].splitlines()[1:]
    assert len(listed) == 1 and winners[0] in listed[0]
