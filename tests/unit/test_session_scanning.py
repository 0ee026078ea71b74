"""What a scan means for the message: virus 554, spam 550, a fault 451 or (by choice) accept."""

from __future__ import annotations

import pytest

from osfmilter import verdict as answers
from osfmilter.config import Config, config_from_dict
from osfmilter.health import BackendHealth
from osfmilter.metrics import Metrics
from osfmilter.model import IdentityKind, ServerState
from osfmilter.scanners import ScanContext, ScannerError, ScanVerdict
from osfmilter.scanners.service import ConfiguredScanner, ScanService
from osfmilter.session import MilterSession
from osfmilter.verdict import CONTINUE, Accept, Refused
from tests.fakes import (
    FakeDirectory,
    FakeRecorder,
    FixedClock,
    MemoryReputation,
    identity,
    services,
)


class StubScanner:
    def __init__(self, name: str, verdict: ScanVerdict | None = None, error: str = "") -> None:
        self.name, self.verdict, self.error = name, verdict, error
        self.calls: list[ScanContext] = []

    def scan(self, message: object, context: ScanContext, timeout: float) -> ScanVerdict:
        self.calls.append(context)
        if self.verdict is None:
            raise ScannerError(self.name, self.error or "down")
        return self.verdict


def send(
    virus: StubScanner | None,
    spam: StubScanner | None,
    config: Config | None = None,
    body: bytes = b"hello\r\n",
    plan: str = "free",
    metrics: Metrics | None = None,
    database_down: bool = False,
) -> tuple[answers.Verdict, FakeRecorder]:
    recorder = FakeRecorder(down=database_down)
    directory = FakeDirectory(by_address={"192.0.2.10": identity(plan=plan)})
    scans = ScanService(
        ConfiguredScanner(virus, 5) if virus else None,
        ConfiguredScanner(spam, 5) if spam else None,
        BackendHealth(),
    )
    session = MilterSession(services(directory, recorder, config, scans=scans, metrics=metrics))
    session.connect("192.0.2.10")
    session.hello("mx.example.com")
    assert session.mail("<a@example.com>", [], "", "") == CONTINUE
    assert session.rcpt("<b@example.org>", "4ABC") == CONTINUE
    session.header("From", "a@example.com")
    session.end_of_headers()
    assert session.body(body) == CONTINUE
    reply = session.end_of_message("4ABC")
    session.close()
    scans.close()
    return reply, recorder


def code(reply: answers.Verdict) -> tuple[int, str] | None:
    """The reply's codes; None for an answer that goes on or accepts."""
    return (reply.code, reply.enhanced_code) if isinstance(reply, Refused) else None


def test_clean_message_is_accepted_with_its_score_recorded() -> None:
    spam = StubScanner("spamassassin", ScanVerdict(score=2.5, rules=("A", "B")))
    reply, recorder = send(StubScanner("clamav", ScanVerdict()), spam)
    assert isinstance(reply, Accept)
    event = recorder.records[-1]
    assert (event.spam_score, event.spam_rules, event.virus_name) == (2.5, "A,B", "")
    context = spam.calls[0]
    assert (context.identity, context.client_ip, context.recipients, context.queue_id) == (
        "server:192.0.2.0/24",
        "192.0.2.10",
        ("<b@example.org>",),
        "4ABC",
    )


def test_virus_is_554_naming_the_signature() -> None:
    reply, recorder = send(StubScanner("clamav", ScanVerdict(virus="Eicar-Test")), None)
    assert (
        code(reply) == (554, "5.7.1") and isinstance(reply, Refused) and "Eicar-Test" in reply.text
    )
    assert (recorder.records[-1].reason, recorder.records[-1].virus_name) == ("virus", "Eicar-Test")


def test_spam_at_the_threshold_is_550() -> None:
    reply, recorder = send(None, StubScanner("spamassassin", ScanVerdict(score=10.0)))
    assert code(reply) == (550, "5.7.1")
    assert recorder.records[-1].reason == "spam"
    assert isinstance(send(None, StubScanner("spamassassin", ScanVerdict(score=9.9)))[0], Accept)


def test_plan_threshold_replaces_the_default() -> None:
    config = config_from_dict(
        {
            "spam": {
                "backend": "spamassassin",
                "address": "127.0.0.1:1",
                "plan_reject_scores": {"paid": 20},
            }
        }
    )
    paid = send(None, StubScanner("spamassassin", ScanVerdict(score=15.0)), config, plan="paid")
    assert isinstance(paid[0], Accept)
    assert code(send(None, StubScanner("spamassassin", ScanVerdict(score=15.0)), config)[0]) == (
        550,
        "5.7.1",
    )


@pytest.mark.parametrize("failing", ["clamav", "spamassassin"])
def test_a_scanner_fault_is_451_471_and_never_clean(failing: str) -> None:
    virus = StubScanner("clamav", None if failing == "clamav" else ScanVerdict())
    spam = StubScanner("spamassassin", None if failing == "spamassassin" else ScanVerdict(score=0))
    config = config_from_dict({"spam": {"backend": "spamassassin", "address": "127.0.0.1:1"}})
    reply, recorder = send(virus, spam, config)
    assert code(reply) == (451, "4.7.1") and isinstance(reply, Refused) and failing in reply.text
    assert recorder.records[-1].reason == "scanner_error"


def test_on_error_accept_lets_the_message_through_unscanned() -> None:
    config = config_from_dict({"clamav": {"address": "/run/x.sock", "on_error": "accept"}})
    reply, recorder = send(StubScanner("clamav"), None, config)
    assert isinstance(reply, Accept) and recorder.records[-1].reason == "accepted"


def fail_open_count(metrics: Metrics, scanner: str) -> float:
    sample = metrics.registry.get_sample_value("osfmilter_fail_open_total", {"backend": scanner})
    return sample or 0.0


@pytest.mark.parametrize("database_down", [False, True])
def test_a_message_let_through_unscanned_is_counted_once_it_is_accepted(
    database_down: bool,
) -> None:
    # Counted as delivered unscanned, so not on a 451 after the scan (its retry counts).
    config = config_from_dict({"clamav": {"address": "/run/x.sock", "on_error": "accept"}})
    metrics = Metrics()
    reply, _ = send(
        StubScanner("clamav"), None, config, metrics=metrics, database_down=database_down
    )
    assert isinstance(reply, Refused if database_down else Accept)
    assert fail_open_count(metrics, "clamav") == (0 if database_down else 1)


def test_a_scanner_fault_that_delays_the_message_is_not_counted_as_fail_open() -> None:
    metrics = Metrics()
    reply, _ = send(StubScanner("clamav"), None, metrics=metrics)
    assert code(reply) == (451, "4.7.1")
    assert fail_open_count(metrics, "clamav") == 0


def test_a_definite_verdict_stands_when_the_other_scanner_fails() -> None:
    reply, _ = send(StubScanner("clamav"), StubScanner("spamassassin", ScanVerdict(score=50)))
    assert code(reply) == (550, "5.7.1")


def test_big_messages_are_virus_scanned_but_not_scored() -> None:
    config = config_from_dict(
        {"spam": {"backend": "spamassassin", "address": "127.0.0.1:1", "max_size": 1000}}
    )
    virus, spam = (
        StubScanner("clamav", ScanVerdict()),
        StubScanner("spamassassin", ScanVerdict(score=99)),
    )
    reply, recorder = send(virus, spam, config, body=b"x" * 2000)
    assert isinstance(reply, Accept) and len(virus.calls) == 1 and spam.calls == []
    assert recorder.records[-1].spam_score is None


# Detections and limit refusals feed the reputation -------------------------------------


def test_spam_and_virus_detections_are_incidents() -> None:
    reputation = MemoryReputation(FixedClock())
    for verdict in (ScanVerdict(virus="Eicar-Test"), ScanVerdict(score=50.0)):
        recorder = FakeRecorder()
        directory = FakeDirectory(by_address={"192.0.2.10": identity()})
        stub = StubScanner("clamav" if verdict.virus else "spamassassin", verdict)
        scans = ScanService(ConfiguredScanner(stub, 5), None, BackendHealth())
        session = MilterSession(services(directory, recorder, scans=scans, reputation=reputation))
        session.connect("192.0.2.10")
        assert session.mail("<a@example.com>", [], "", "") == CONTINUE
        assert session.rcpt("<b@example.org>", "Q") == CONTINUE
        session.end_of_headers()
        assert session.end_of_message("Q") is not None
        session.close()
    reasons = [t.reason for t in reputation.history]
    assert len(reasons) == 1 and "virus" in reasons[0]  # veilig -> verdacht, once
    assert reputation.state(IdentityKind.SERVER, 1) is ServerState.VERDACHT
    standing = reputation.standings[(IdentityKind.SERVER, 1)]
    assert len(standing.detections) == 2


def test_reputation_down_does_not_change_the_refusal() -> None:
    reputation = MemoryReputation(FixedClock())
    reputation.down = True
    recorder = FakeRecorder()
    scans = ScanService(
        ConfiguredScanner(StubScanner("clamav", ScanVerdict(virus="X")), 5), None, BackendHealth()
    )
    session = MilterSession(
        services(
            FakeDirectory(by_address={"192.0.2.10": identity()}),
            recorder,
            scans=scans,
            reputation=reputation,
        )
    )
    session.connect("192.0.2.10")
    assert session.mail("<a@example.com>", [], "", "") == CONTINUE
    assert session.rcpt("<b@example.org>", "Q") == CONTINUE
    session.end_of_headers()
    assert code(session.end_of_message("Q")) == (554, "5.7.1")
    session.close()
