"""The pure policy layer: per SMTP stage, an ordered tuple of checks.

A check looks at facts and returns a :class:`~osfmilter.replies.Refusal` or
``None``; it never acts. The first refusal of a stage decides.
"""

from osfmilter.policy.checks import (
    BODY_CHECKS,
    EOM_CHECKS,
    MAIL_CHECKS,
    RATE_CHECKS,
    RCPT_CHECKS,
    SCAN_CHECKS,
    SPF_CHECKS,
    VOLUME_CHECKS,
    BodyFacts,
    EomFacts,
    MailFacts,
    RateFacts,
    RcptFacts,
    ScanFacts,
    SpfFacts,
    VolumeFacts,
    first_refusal,
)

__all__ = [
    "BODY_CHECKS",
    "EOM_CHECKS",
    "MAIL_CHECKS",
    "RATE_CHECKS",
    "RCPT_CHECKS",
    "SCAN_CHECKS",
    "SPF_CHECKS",
    "VOLUME_CHECKS",
    "BodyFacts",
    "EomFacts",
    "MailFacts",
    "RateFacts",
    "RcptFacts",
    "ScanFacts",
    "SpfFacts",
    "VolumeFacts",
    "first_refusal",
]
