"""blocked: an onveilig identity sends nothing."""

from __future__ import annotations

import pytest

from osfmilter.model import ServerState
from osfmilter.policy.steps.blocked import not_blocked
from osfmilter.replies import reply_for
from osfmilter.verdict import Reject
from tests.fakes import identity
from tests.unit.policy.builders import world


def test_unsafe_server_is_blocked_with_554_and_contact() -> None:
    refusal = not_blocked.check(world(identity(state=ServerState.ONVEILIG)).context)
    assert refusal is not None
    reply = reply_for(refusal)
    assert isinstance(reply, Reject) and (reply.code, reply.enhanced_code) == (554, "5.7.1")
    assert "contact support" in reply.text and "192.0.2.0/24" in reply.text


@pytest.mark.parametrize("state", [ServerState.VEILIG, ServerState.VERDACHT])
def test_safe_and_suspicious_servers_pass(state: ServerState) -> None:
    assert not_blocked.check(world(identity(state=state)).context) is None
