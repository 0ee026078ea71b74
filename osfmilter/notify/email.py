"""A notification as an e-mail to the customer's contacts: readable text, then the facts.

Handed to ``[notify] smtp`` with smtplib; the relay's own MTA delivers it.
"""

from __future__ import annotations

import smtplib
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from osfmilter.notify.webhook import DeliveryFailed

_STATE_NAMES = {
    "veilig": "veilig (safe)",
    "verdacht": "verdacht (suspicious)",
    "onveilig": "onveilig (unsafe)",
}


def _what(identity: str) -> str:
    kind, _, name = identity.partition(":")
    if kind == "server":
        return f"your SMTP server {name}"
    if kind == "sasl":
        return f"your SASL login {name}"
    return "your account"


def subject(notice_type: str, identity: str, details: Mapping[str, object]) -> str:
    what = _what(identity)
    kind = notice_type.partition(".")[0]
    if kind == "state":
        return f"osfmilter: {what} is now {details.get('new_state', '')}"
    if kind == "volume":
        return (
            f"osfmilter: {details.get('domain', '')} has used {details.get('threshold', '')} % "
            f"of its monthly volume"
        )
    if notice_type == "refusal.unregistered_sender":
        return f"osfmilter: mail as {details.get('domain', '')} from an unregistered client"
    return f"osfmilter: mail from {what} was refused"


def text(
    notice_type: str,
    customer: str,
    identity: str,
    details: Mapping[str, object],
    contact: str,
) -> str:
    """The plain text: what happened and what to do, in sentences."""
    what = _what(identity)
    kind = notice_type.partition(".")[0]
    lines: list[str] = []
    if kind == "state":
        new = str(details.get("new_state", ""))
        lines.append(
            f"{what[0].upper()}{what[1:]} (customer {customer}) is now "
            f"{_STATE_NAMES.get(new, new)}: {details.get('reason', '')}."
        )
        if new == "verdacht":
            lines.append(
                "Its mail is still relayed, but slowly: at most the plan's low rate. It becomes "
                f"veilig again by itself at {details.get('recovers_at', '')} if no more spam, "
                "virus or rule breaking is seen before then. Check the server for a compromised "
                "account or script."
            )
        elif new == "onveilig":
            lines.append(
                "Every message from it is refused (554 5.7.1). It does not recover by itself: "
                f"{details.get('release', '')} ({contact}) once the cause is fixed."
            )
        else:
            lines.append("Its mail is relayed at the plan's normal limits again.")
    elif kind == "volume":
        lines.append(
            f"The domain {details.get('domain', '')} (customer {customer}) has sent "
            f"{details.get('used_bytes', '')} bytes this month ({details.get('month', '')}), "
            f"{details.get('percent', '')} % of its allowance of "
            f"{details.get('allowance_bytes', '')} bytes."
        )
        lines.append(
            "When the allowance is used up, messages that do not fit are delayed (451 4.7.1) "
            "until the month ends; mail it receives through the relay raises it."
        )
    elif notice_type == "refusal.unregistered_sender":
        lines.append(
            f"A client at {details.get('client', '')} that is not registered tried to send "
            f"mail as {details.get('sender', '')} through the relay: {details.get('domain', '')} "
            f"is a domain of customer {customer}. It was refused "
            f"({details.get('answer', '')}). This is the first such refusal today; further "
            "ones today are not mailed."
        )
        lines.append(
            "If it is your server, register it (or let it log in with a SASL account); if it "
            "is not, someone else tried to send as your domain."
        )
    else:
        lines.append(
            f"A message from {what} (customer {customer}) was refused: "
            f"{details.get('reason', '')}. This is the first such refusal today; further ones "
            "today are not mailed."
        )
        if hint := details.get("what_to_do"):
            lines.append(f"To send it: {hint}.")
    return "\n\n".join(textwrap.fill(line, 72) for line in lines)


def facts_table(rows: Sequence[tuple[str, object]]) -> str:
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"  {key.ljust(width)}  {value}" for key, value in rows)


def compose(
    *,
    sender: str,
    recipients: Sequence[str],
    event_id: str,
    notice_type: str,
    at: datetime,
    customer: str,
    identity: str,
    details: Mapping[str, object],
    contact: str,
    now: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject(notice_type, identity, details)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message["X-Osfmilter-Event"] = event_id
    facts: list[tuple[str, object]] = [
        ("event id", event_id),
        ("type", notice_type),
        ("time", at.isoformat(timespec="seconds")),
        ("customer", customer),
        ("identity", identity or "-"),
        *((key, value) for key, value in sorted(details.items())),
    ]
    message.set_content(
        f"{text(notice_type, customer, identity, details, contact)}\n\n"
        f"The facts:\n\n{facts_table(facts)}\n"
    )
    return message


def send(smtp: tuple[str, int], message: EmailMessage, timeout: float) -> None:
    host, port = smtp
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            refused = client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryFailed(f"{host}:{port} refused every recipient: {exc.recipients}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"{host}:{port}: {exc or type(exc).__name__}") from None
    if refused:
        # Delivered to the others: sending again would repeat it for them.
        return
