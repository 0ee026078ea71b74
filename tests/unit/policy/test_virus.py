"""virus: a detection is refused for good, naming the signature."""

from __future__ import annotations

from osfmilter.policy.steps.virus import no_virus
from osfmilter.replies import reply_for
from tests.unit.policy.builders import report, world


def test_a_virus_is_554_naming_it() -> None:
    w = world()
    w.tx.scan = report(virus="Eicar-Test")
    refusal = no_virus.check(w.context)
    assert refusal is not None
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (554, "5.7.1") and "Eicar-Test" in reply.text


def test_clean_unscanned_and_failed_pass() -> None:
    for scanned in (report(virus=""), report(), report(failed=("clamav",))):
        w = world()
        w.tx.scan = scanned
        assert no_virus.check(w.context) is None
