"""scan: the message goes to the scanners; the report is noted, nothing refused."""

from __future__ import annotations

from osfmilter.policy.steps.scan import scan
from tests.unit.policy.builders import report, world


def test_the_report_is_noted_on_the_transaction() -> None:
    w = world()
    w.scanning.report = report(virus="Eicar-Test", failed=("spamassassin",))
    assert scan.check(w.context) is None
    assert w.scanning.scanned == 1 and w.tx.scan.virus == "Eicar-Test"
