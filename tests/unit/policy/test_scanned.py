"""scanned: a scanner that could not answer delays the message, unless let through."""

from __future__ import annotations

import pytest

from osfmilter.config import config_from_dict
from osfmilter.policy.steps.scanned import scanned
from osfmilter.replies import reply_for
from tests.unit.policy.builders import report, world


@pytest.mark.parametrize("scanner", ["clamav", "spamassassin"])
def test_a_failed_scanner_is_451_naming_it(scanner: str) -> None:
    w = world()
    w.tx.scan = report(failed=(scanner,))
    refusal = scanned.check(w.context)
    assert refusal is not None
    reply = reply_for(refusal)
    assert (reply.code, reply.enhanced_code) == (451, "4.7.1") and scanner in reply.text


def test_on_error_accept_lets_the_message_pass() -> None:
    config = config_from_dict(
        {
            "clamav": {"on_error": "accept"},
            "spam": {"backend": "rspamd", "address": "127.0.0.1:11333", "on_error": "accept"},
        }
    )
    w = world(config=config)
    w.tx.scan = report(failed=("clamav", "rspamd"))
    assert scanned.check(w.context) is None


def test_only_the_failed_scanners_setting_counts() -> None:
    config = config_from_dict({"clamav": {"on_error": "accept"}})
    w = world(config=config)
    w.tx.scan = report(virus="", failed=("spamassassin",))
    refusal = scanned.check(w.context)
    assert refusal is not None and "spamassassin" in reply_for(refusal).text
