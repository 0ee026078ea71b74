"""Hostile and real-world mail through a real Postfix, the milter, clamd and spamd.

Issue 9, items 8, 11 and 12:

* the corpus of ``tests/corpus/generate.py`` (public samples and generated
  hostile messages), each with its expected answer, sent over a few
  parallel connections; for every message: the exact SMTP and enhanced
  code, one single-line decision record with control characters escaped,
  one stored event row, and delivery to the sink exactly when accepted;
* messages of exactly 52,428,800 bytes and one byte more, with and without
  ``SIZE=``, while the milter's peak memory stays far below the message size;
* an SMTP smuggling probe: a bare ``<LF>.<LF>`` inside DATA ends nothing.

Everything runs on SQLite and on PostgreSQL (which refuses NUL in text).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from osfmilter.storage.schema import Event
from tests.corpus.generate import (
    ANSWERS,
    DOMAIN,
    FOREIGN,
    SIZE_LIMIT,
    CorpusEntry,
    Expect,
    corpus,
    sample_from_domains,
)
from tests.harness.clamd import ClamdProcess
from tests.harness.smtpclient import Client, Reply, Result, make_message, send
from tests.harness.spamd import SpamdProcess
from tests.integration.conftest import Relay, running_relay

pytestmark = pytest.mark.integration

SERVER = "192.0.2.90"
REJECT_SCORE = 10.0
#: Parallel SMTP connections: enough to overlap Postfix, clamd and spamd on two cores.
WORKERS = 6
#: Each scanner's timeout (they run concurrently): far inside Postfix's milter_content_timeout.
SCAN_TIMEOUT = 20
#: The milter's peak memory may grow by this much for a 50 MB message (it spools to disk).
RSS_GROWTH_LIMIT = 32 * 1024 * 1024

ENTRIES = corpus()
#: A directory to copy the milter log and Postfix's maillog to, per backend.
KEEP_LOGS_ENV = "OSFMILTER_TEST_KEEP_LOGS"

_QUEUED = re.compile(r"queued as (\w+)")
#: The milter's own header on accepted mail (the line it starts; folding is not expected).
_STAMP = re.compile(rb"(?im)^x-osfmilter:[^\r\n]*")
#: A log record starts with logging's asctime; anything else is a continuation line.
_RECORD_START = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
#: Raw bytes that must never stand in a log line: C0 controls (but tab), DEL, C1
#: controls and U+2028/U+2029 in UTF-8 (line breaks to str.splitlines()).
_RAW_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8\xa9]")


def milter_config(clamd: ClamdProcess, spamd: SpamdProcess) -> str:
    """Both scanners; limits out of the way (the corpus is about content, not rates).

    The paid plan's unknown-sender recipient limit is the free plan's 5, so the
    messages whose From: header turns the sender unknown can show 452 4.5.3
    with six recipients, while a known sender may have 500. Spam and virus
    detections make the server verdacht; its low rate must not interfere either.
    """
    return (
        f'[clamav]\naddress = "{clamd.socket_path}"\ntimeout = {SCAN_TIMEOUT}\n'
        f'[spam]\nbackend = "spamassassin"\naddress = "{spamd.address}"\n'
        f"timeout = {SCAN_TIMEOUT}\nreject_score = {REJECT_SCORE}\n"
        "[plans.paid]\nrate_known = 100000\nrate_unknown = 100000\nrate_suspicious = 100000\n"
        "max_recipients_unknown = 5\nmonthly_volume_limited = false\n"
        "[reputation]\nauto_block = false\n"
    )


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def hostile_relay(
    request: pytest.FixtureRequest, scratch: Path, clamd: ClamdProcess, spamd: SpamdProcess
) -> Iterator[Relay]:
    if request.param == "sqlite":
        url = f"sqlite:///{scratch}/hostile.sqlite3"
    else:
        url = request.getfixturevalue("pg_server_url")
    domains = sample_from_domains()
    # The spoofing messages need a domain nobody registered.
    assert not any(d == FOREIGN or FOREIGN.endswith("." + d) for d in domains), domains
    with running_relay(
        url, name=f"osf-hostile-{request.param}", milter_config=milter_config(clamd, spamd)
    ) as relay:
        relay.register("corpus", "paid", domains=(DOMAIN, *domains), servers=(SERVER,))
        try:
            yield relay
        finally:
            if keep := os.environ.get(KEEP_LOGS_ENV):
                # The relay's directory goes away; keep its logs to look at failures.
                target = Path(keep) / request.param
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(relay.milter.log_path, target / "osfmilter.log")
                shutil.copy(relay.postfix.maillog_path, target / "maillog")


# The corpus ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    entry: CorpusEntry
    sender: str
    recipients: tuple[str, ...]
    result: Result
    seconds: float


@dataclass(frozen=True)
class CorpusRun:
    relay: Relay
    sent: dict[str, Sent]
    seconds: float


def envelope(index: int, entry: CorpusEntry) -> tuple[str, tuple[str, ...]]:
    """A sender and recipients of this message's own, to find its event, log line and copy."""
    sender = f"c{index:03d}@{DOMAIN}"
    return sender, tuple(f"r{index:03d}-{k}@dest.example" for k in range(entry.recipients))


def deliver(relay: Relay, index: int, entry: CorpusEntry) -> Sent:
    sender, recipients = envelope(index, entry)
    data = entry.data()
    started = time.monotonic()
    result = send(
        relay.port,
        sender,
        recipients,
        data,
        client_addr=SERVER,
        size=entry.declared_size,
        timeout=120,
    )
    return Sent(entry, sender, recipients, result, time.monotonic() - started)


@pytest.fixture(scope="module")
def corpus_run(hostile_relay: Relay) -> CorpusRun:
    """The whole corpus, sent once per backend over WORKERS connections; the queue drained."""
    relay = hostile_relay
    started = time.monotonic()
    # The heavy ones first, so that they do not trail at the end.
    order = sorted(enumerate(ENTRIES), key=lambda item: -len(item[1].data()))
    with ThreadPoolExecutor(WORKERS) as pool:
        sent = list(pool.map(lambda item: deliver(relay, *item), order))
    relay.postfix.wait_queue_empty(timeout=120)
    return CorpusRun(relay, {s.entry.name: s for s in sent}, time.monotonic() - started)


def decision_records(relay: Relay, needle: str) -> list[bytes]:
    """The milter log's lines (split at LF only) that are decisions and contain needle."""
    raw = relay.milter.log_path.read_bytes()
    return [
        line
        for line in raw.split(b"\n")
        if b"osfmilter.decision" in line and needle.encode() in line
    ]


def expected_answer(sent: Sent, event: Event | None) -> tuple[int, str]:
    expect = sent.entry.expect
    if expect is Expect.SCORED:
        # What a correct milter answers depends on spamd's verdict, recorded in the event.
        assert event is not None and event.spam_score is not None, "no spam score recorded"
        return (550, "5.7.1") if event.spam_score >= REJECT_SCORE else (250, "2.0.0")
    return ANSWERS[expect]


def answer(sent: Sent) -> Reply | None:
    """The reply that decides: MAIL's when SIZE= is refused there, else the end of DATA's."""
    if sent.entry.declared_size is not None and not sent.result.mail.ok:
        return sent.result.mail
    return sent.result.data


_REASONS = {
    Expect.DELIVERED: "accepted",
    Expect.VIRUS: "virus",
    Expect.SPAM: "spam",
    Expect.UNKNOWN_SENDER_RECIPIENTS: "recipient_limit",
    Expect.OVERSIZE: "message_size",
}


def check_sent(run: CorpusRun, sent: Sent) -> list[str]:
    """Every way this message's handling can be wrong, as readable findings."""
    relay, entry = run.relay, sent.entry
    problems: list[str] = []
    reply = answer(sent)
    got = (reply.code, reply.text.split(" ", 1)[0]) if reply else None
    if got == (451, "4.3.0"):
        problems.append(f"untrapped exception: {reply}")
    if reply is not None and reply.code == -1:
        problems.append(f"connection lost: {reply}")
    if not (entry.declared_size and got and got[0] >= 500):
        refused = [str(r) for r in sent.result.rcpt if r.code != 250]
        if not sent.result.mail.ok or refused:
            problems.append(f"envelope refused: MAIL {sent.result.mail} RCPT {refused}")

    events = relay.events(envelope_sender=sent.sender)
    event = events[0] if len(events) == 1 else None
    if len(events) != 1:
        problems.append(f"{len(events)} event rows instead of 1")
    try:
        code, enhanced_code = expected_answer(sent, event)
    except AssertionError as exc:
        problems.append(str(exc))
        code, enhanced_code = ANSWERS.get(entry.expect, (250, "2.0.0"))
    if got != (code, enhanced_code):
        problems.append(f"answer {reply} instead of {code} {enhanced_code}")

    if event is not None:
        stored = (event.smtp_code, event.enhanced_code)
        if stored != (code, enhanced_code):
            problems.append(f"event stores {stored} instead of {(code, enhanced_code)}")
        reason = _REASONS.get(entry.expect) or ("accepted" if code == 250 else "spam")
        if event.reason != reason:
            problems.append(f"event reason {event.reason!r} instead of {reason!r}")
        if code == 250:
            queued = _QUEUED.search(reply.text) if reply else None
            if queued is None or event.queue_id != queued.group(1):
                problems.append(f"event queue id {event.queue_id!r} is not Postfix's ({reply})")
        if entry.expect is Expect.VIRUS and not event.virus_name.startswith("Osf.Test."):
            problems.append(f"event virus name {event.virus_name!r}")
        scanned = entry.expect not in (Expect.UNKNOWN_SENDER_RECIPIENTS, Expect.OVERSIZE)
        if scanned and event.spam_score is None:
            problems.append("no spam score recorded")

    # One decision record, on one line, with the control characters escaped.
    records = decision_records(relay, f"from=<{sent.sender}>")
    if len(records) != 1:
        problems.append(f"{len(records)} decision records instead of 1: {records!r}")
    for record in records:
        if _RAW_CONTROL.search(record):
            problems.append(f"raw control character in the decision record: {record!r}")
        if not _RECORD_START.match(record):
            problems.append(f"decision record does not start a log line: {record!r}")
        text = record.decode("utf-8", "replace")
        if text not in relay.milter.decision_lines():
            problems.append(f"decision_lines() breaks the record apart: {text!r}")
        if f"code={code} enhanced_code={enhanced_code}" not in text:
            problems.append(
                f"decision record lacks code={code} enhanced_code={enhanced_code}: {text!r}"
            )
        if event is not None and event.queue_id and f"qid={event.queue_id} " not in text:
            problems.append(f"decision record lacks qid={event.queue_id}: {text!r}")

    # Delivered exactly once to every recipient when accepted, never when refused.
    copies = [m for m in relay.sink.messages if set(m.rcpt_tos) & set(sent.recipients)]
    delivered = [r for m in copies for r in m.rcpt_tos if r in sent.recipients]
    wanted = sorted(sent.recipients) if code == 250 else []
    if sorted(delivered) != wanted:
        problems.append(f"sink received {sorted(delivered)} instead of {wanted}")
    # ... carrying the milter's own header once: any copy the client sent is gone.
    for copy in copies:
        stamps = _STAMP.findall(copy.data)
        if len(stamps) != 1 or (
            event is not None and b"qid=%s;" % event.queue_id.encode() not in stamps[0]
        ):
            problems.append(f"delivered copy has X-Osfmilter headers {stamps!r}")
    return problems


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_corpus_message(corpus_run: CorpusRun, entry: CorpusEntry) -> None:
    sent = corpus_run.sent[entry.name]
    problems = check_sent(corpus_run, sent)
    if problems:
        pytest.fail(
            f"{entry.name} ({entry.category}, expect {entry.expect}, "
            f"{sent.seconds:.1f} s): "
            + "; ".join(problems)
            + "\nmilter log:\n"
            + log_excerpt(corpus_run.relay, sent.sender),
            pytrace=False,
        )


def log_records(relay: Relay) -> list[str]:
    """The milter log as records: a line that starts one, and its continuation lines."""
    records: list[str] = []
    for line in relay.milter.log_path.read_bytes().split(b"\n"):
        text = line.decode("utf-8", "backslashreplace")
        if _RECORD_START.match(line) or not records:
            records.append(text)
        else:
            records[-1] += "\n" + text
    return records


def log_excerpt(relay: Relay, sender: str) -> str:
    """This sender's records, and the first different tracebacks of the run."""
    records = log_records(relay)
    mine = [r for r in records if sender in r]
    faults: dict[str, str] = {}
    for record in records:
        if "Traceback" in record:
            faults.setdefault(record.splitlines()[-1], record)
    return "\n".join([*mine, *list(faults.values())[:3]])


def test_corpus_size_and_runtime(corpus_run: CorpusRun) -> None:
    """At least 150 messages, of every kind the issue names; the run stays short."""
    assert len(ENTRIES) >= 150
    categories = {e.category for e in ENTRIES}
    assert {
        "nul",
        "line-endings",
        "long-lines",
        "many-headers",
        "mime-structure",
        "boundaries",
        "encodings",
        "8bit-headers",
        "encoded-words",
        "from",
        "archives",
        "eicar",
        "gtube",
    } <= categories
    assert {e.expect for e in ENTRIES} == set(Expect)
    slowest = max(corpus_run.sent.values(), key=lambda s: s.seconds)
    assert slowest.seconds < 60, (slowest.entry.name, slowest.seconds)
    assert corpus_run.seconds < 150, corpus_run.seconds


def test_milter_log_has_one_line_per_record_and_no_faults(corpus_run: CorpusRun) -> None:
    """No traceback, no continuation line, no raw control character (in any line, not
    only decisions), no internal error in the whole run."""
    relay = corpus_run.relay
    raw = relay.milter.log_path.read_bytes()
    broken = [line for line in raw.split(b"\n") if line and not _RECORD_START.match(line)]
    assert not broken, b"\n".join(broken[:40]).decode("utf-8", "replace")
    raw_control = [line for line in raw.split(b"\n") if _RAW_CONTROL.search(line)]
    assert not raw_control, raw_control[:10]
    assert not relay.events(reason="internal_error")
    assert not relay.events(reason="database_error")
    # One decision record per stored event.
    assert len(relay.milter.decision_lines()) == len(relay.events())


def test_one_connection_many_transactions(hostile_relay: Relay) -> None:
    """Each transaction of a session gets its own answer: nothing carries over."""
    relay = hostile_relay
    by_name = {e.name: e for e in ENTRIES}
    names = [
        "clean_plain",
        "eicar_zip_deflated",
        "clean_attachment",
        "gtube_plain",
        "from_foreign_many_rcpts",
        "hdr_subject_control_chars",
        "size_declared_over_limit",
        "from_missing",
        "eicar_in_alternative",
        "clean_utf8_body",
    ]
    with Client(timeout=120) as client:
        client.connect(relay.port)
        assert client.xclient(addr=SERVER).code == 220
        for index, name in enumerate(names):
            entry = by_name[name]
            sender = f"session-{index}@{DOMAIN}"
            recipients = [f"session-{index}-{k}@dest.example" for k in range(entry.recipients)]
            mail = client.mail(sender, size=entry.declared_size)
            if entry.expect is Expect.OVERSIZE:
                reply = mail
            else:
                assert mail.code == 250, (name, mail)
                assert all(client.rcpt(r).code == 250 for r in recipients), name
                reply = client.data(entry.data())
            code, enhanced_code = ANSWERS[entry.expect]
            assert (reply.code, reply.text.split(" ", 1)[0]) == (code, enhanced_code), (name, reply)
            [event] = relay.events(envelope_sender=sender)
            assert (event.smtp_code, event.enhanced_code) == (code, enhanced_code), name
            assert len(decision_records(relay, f"from=<{sender}>")) == 1, name
            if reply.code != 250:
                client.rset()


# Hostile envelope: the decision record carries the sender and HELO as given.

_ENVELOPES = {
    "escape-sequences": (b"EHLO client\x1b[2J.test", b"MAIL FROM:<esc\x1bx@corpus.example>"),
    "quoted-bel-tab": (b"EHLO client.test", b'MAIL FROM:<"bel\x07tab\t"@corpus.example>'),
    "line-separator": (
        "EHLO ls\u2028.test".encode(),
        "MAIL FROM:<ls\u2028x@corpus.example> SMTPUTF8".encode(),
    ),
    "paragraph-separator": (
        b"EHLO client.test",
        "MAIL FROM:<ps\u2029x@corpus.example> SMTPUTF8".encode(),
    ),
    "next-line-c1": (b"EHLO client.test", "MAIL FROM:<nel\x85x@corpus.example> SMTPUTF8".encode()),
    "utf8": ("EHLO caf\xe9.test".encode(), "MAIL FROM:<caf\xe9@corpus.example> SMTPUTF8".encode()),
}


@pytest.mark.parametrize("case", list(_ENVELOPES), ids=list(_ENVELOPES))
def test_hostile_envelope_is_logged_on_one_line(hostile_relay: Relay, case: str) -> None:
    relay = hostile_relay
    ehlo, mail = _ENVELOPES[case]
    with Client(timeout=60) as client:
        client.connect(relay.port)
        assert client.xclient(addr=SERVER).code == 220
        client.smtp.send(ehlo + b"\r\n")
        assert client.smtp.getreply()[0] == 250
        client.smtp.send(mail + b"\r\n")
        code, said = client.smtp.getreply()
        assert code == 250, said
        assert client.rcpt(f"envelope-{case}@dest.example").code == 250
        reply = client.data(make_message(f"news@{DOMAIN}", "r@dest.example", case, "Hi.\r\n"))
    assert reply.code == 250, reply
    queued = _QUEUED.search(reply.text)
    assert queued is not None
    [event] = relay.events(queue_id=queued.group(1))
    assert (event.smtp_code, event.enhanced_code) == (250, "2.0.0")
    [record] = decision_records(relay, f"qid={queued.group(1)} ")
    assert not _RAW_CONTROL.search(record), record
    text = record.decode("utf-8")
    assert text in relay.milter.decision_lines(), f"decision_lines() breaks {text!r} apart"


# Sizes at the limit (item 11) ---------------------------------------------------------


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def _milter_pid(relay: Relay) -> int:
    assert relay.milter.process is not None
    return relay.milter.process.pid


@pytest.mark.parametrize("declare", [False, True], ids=["streamed", "SIZE"])
@pytest.mark.parametrize("excess", [0, 1], ids=["at-limit", "one-over"])
def test_size_limit_exactly(hostile_relay: Relay, excess: int, declare: bool) -> None:
    relay = hostile_relay
    size = SIZE_LIMIT + excess
    sender = f"size-{excess}-{'declared' if declare else 'streamed'}@{DOMAIN}"
    recipient = f"{sender.partition('@')[0]}@dest.example"
    data = make_message(sender, [recipient], "exactly at the limit", "Big.\r\n", size=size)
    assert len(data) == size
    pid = _milter_pid(relay)
    try:
        # Forget the peak so far (clear_refs 5 resets VmHWM): the peak is this message's.
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = _status(pid, "VmRSS")
    except OSError:  # not allowed here: compare with the peak so far
        before = _status(pid, "VmHWM")

    result = send(
        relay.port,
        sender,
        [recipient],
        data,
        client_addr=SERVER,
        size=size if declare else None,
        timeout=300,
    )

    growth = _status(pid, "VmHWM") - before
    assert growth < RSS_GROWTH_LIMIT, f"milter peak RSS grew by {growth} bytes"
    [event] = relay.events(envelope_sender=sender)
    if excess == 0:
        assert result.accepted, result
        assert (event.smtp_code, event.enhanced_code, event.size) == (250, "2.0.0", size)
        [copy] = relay.sink.wait_for(
            lambda msgs: any(recipient in m.rcpt_tos for m in msgs), timeout=120
        )[-1:]
        assert recipient in copy.rcpt_tos
    else:
        reply = result.mail if declare else result.data
        assert reply is not None
        assert (reply.code, reply.text.split(" ", 1)[0]) == (552, "5.3.4"), result
        assert (event.smtp_code, event.enhanced_code) == (552, "5.3.4")
        assert event.stage == ("mail" if declare else "body")
    [record] = decision_records(relay, f"from=<{sender}>")
    assert not _RAW_CONTROL.search(record)


# SMTP smuggling (item 12) -------------------------------------------------------------

_FAKE_ENDS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CR": b"\r.\r",
}


@pytest.mark.parametrize("fake_end", list(_FAKE_ENDS), ids=list(_FAKE_ENDS))
def test_smuggled_message_is_not_delivered(hostile_relay: Relay, fake_end: str) -> None:
    relay = hostile_relay
    tag = fake_end.replace(".", "-").lower()
    outer = f"<smuggle-outer-{tag}@{DOMAIN}>"
    inner = f"<smuggle-inner-{tag}@{DOMAIN}>"
    sender = f"smuggler-{tag}@{DOMAIN}"
    victim = f"victim-{tag}@dest.example"
    payload = (
        (
            f"From: {sender}\r\nTo: r@dest.example\r\nSubject: outer\r\n"
            f"Message-ID: {outer}\r\n\r\nThe outer message.\r\n"
        ).encode()
        + _FAKE_ENDS[fake_end]
        + (
            f"MAIL FROM:<forged-{tag}@{DOMAIN}>\r\nRCPT TO:<{victim}>\r\nDATA\r\n"
            f"From: ceo@{DOMAIN}\r\nTo: {victim}\r\nSubject: forged\r\n"
            f"Message-ID: {inner}\r\n\r\nPay the invoice.\r\n"
        ).encode()
        + b"\r\n.\r\n"
    )
    with Client(timeout=60) as client:
        client.connect(relay.port)
        assert client.xclient(addr=SERVER).code == 220
        assert client.mail(sender).code == 250
        assert client.rcpt(f"r-{tag}@dest.example").code == 250
        reply = client.data_raw(payload)
    # Whatever the answer, it is a decision of the relay, not a fault.
    assert (reply.code, reply.text.split(" ", 1)[0]) != (451, "4.3.0"), reply
    relay.postfix.wait_queue_empty(timeout=60)
    if reply.code == 250:
        relay.sink.wait_for_message_id(outer, timeout=30)
    assert relay.sink.count_message_id(outer) == (1 if reply.code == 250 else 0), reply
    assert relay.sink.count_message_id(inner) == 0
    assert not [m for m in relay.sink.messages if victim in m.rcpt_tos]
    assert not relay.events(envelope_sender=f"forged-{tag}@{DOMAIN}")
    assert len(relay.events(envelope_sender=sender)) == 1
