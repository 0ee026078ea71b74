from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import SpfFail, SpfPermError, SpfTempError


def _spf_on(context: Context) -> bool:
    return context.ports.spf is not None


@step("spf", when=_spf_on)
def spf_authorizes_relay(context: Context) -> SpfFail | SpfTempError | SpfPermError | None:
    """The sender domain's SPF allows the relay's addresses; fail and errors answer as configured.

    softfail, neutral and none pass; so does any result configured "record".
    """
    assert context.ports.spf is not None
    tx, settings = context.tx, context.config.spf
    outcome = context.ports.spf.check(tx.envelope.sender, context.helo)
    tx.spf = outcome
    if outcome.result == "fail" and settings.on_fail != "record":
        include = f"include:{settings.include} " if settings.include else ""
        advice = (
            f'publish "v=spf1 {include}-all" (or ~all)'
            if include
            else "add the relay's addresses to the SPF record"
        )
        return SpfFail(outcome.domain, outcome.failing_ip, advice, settings.on_fail == "tempfail")
    if outcome.result == "temperror" and settings.on_temperror == "tempfail":
        return SpfTempError(outcome.domain)
    if outcome.result == "permerror" and settings.on_permerror != "record":
        deferred = settings.on_permerror == "tempfail"
        return SpfPermError(outcome.domain, outcome.explanation, deferred)
    return None
