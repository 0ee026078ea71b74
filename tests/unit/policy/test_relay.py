"""relay: only registered servers and SASL accounts relay."""

from __future__ import annotations

from osfmilter.policy.steps.relay import relay_permitted
from osfmilter.replies import RelayDenied, reply_for
from tests.unit.policy.builders import world


def test_unregistered_client_is_refused_with_550_and_a_hint() -> None:
    refusal = relay_permitted.check(world(unregistered=True).context)
    assert isinstance(refusal, RelayDenied)
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (550, "5.7.1")
    assert "192.0.2.10" in reply.text and "SMTP servers > Add" in reply.text


def test_registered_client_passes() -> None:
    assert relay_permitted.check(world().context) is None
