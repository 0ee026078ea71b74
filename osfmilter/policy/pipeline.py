"""The whole policy in one table: per SMTP stage, the steps in the order they run.

The first refusal of a stage decides (docs/rules.rst, 'Order of the
checks'); docs/design.rst prints this table. A step listed at two stages
is the same rule on newer facts.
"""

from __future__ import annotations

from collections.abc import Mapping

from osfmilter.model import Stage
from osfmilter.policy.engine import Step
from osfmilter.policy.steps.blocked import not_blocked
from osfmilter.policy.steps.content_timeout import content_timeout
from osfmilter.policy.steps.declared_size import declared_size
from osfmilter.policy.steps.header_recipients import recipients_for_header_sender
from osfmilter.policy.steps.own_domain import from_domains_not_foreign, sender_domain_not_foreign
from osfmilter.policy.steps.rate_renewal import reservations_current
from osfmilter.policy.steps.rate_window import rate_window
from osfmilter.policy.steps.recipients import recipients_within_limit
from osfmilter.policy.steps.relay import relay_permitted
from osfmilter.policy.steps.scan import scan
from osfmilter.policy.steps.scanned import scanned
from osfmilter.policy.steps.spam import not_spam
from osfmilter.policy.steps.spf import spf_authorizes_relay
from osfmilter.policy.steps.streamed_size import streamed_size
from osfmilter.policy.steps.unknown_sender_window import unknown_sender_window
from osfmilter.policy.steps.virus import no_virus
from osfmilter.policy.steps.volume import within_volume

PIPELINE: Mapping[Stage, tuple[Step, ...]] = {
    Stage.MAIL: (
        relay_permitted, not_blocked, sender_domain_not_foreign,
        declared_size, rate_window, spf_authorizes_relay,
    ),
    Stage.RCPT: (recipients_within_limit,),
    Stage.BODY: (streamed_size,),
    Stage.EOM: (
        streamed_size, from_domains_not_foreign,
        recipients_for_header_sender, unknown_sender_window,
        scan, no_virus, not_spam, scanned,
        reservations_current, content_timeout, within_volume,
    ),
}  # fmt: skip
