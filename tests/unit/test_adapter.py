"""The pymilter adapter under pymilter's own harness (Milter.testctx)."""

from __future__ import annotations

import email.message
import errno
import io
import logging
import socket
from collections.abc import Iterator

import Milter
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from Milter import testctx

from osfmilter.milter.adapter import OsfMilter
from osfmilter.spool import Spool
from tests.fakes import FakeDirectory, FakeRecorder, FixedClock, MemoryLimiter, identity, services

VALID = {Milter.CONTINUE, Milter.ACCEPT, Milter.REJECT, Milter.TEMPFAIL, Milter.NOREPLY}


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory(by_address={"192.0.2.10": identity()}, by_login={"bob": identity("bob")})


@pytest.fixture
def ctx(directory: FakeDirectory, recorder: FakeRecorder) -> Iterator[testctx.TestCtx]:
    Milter.factory = lambda: OsfMilter(services(directory, recorder))
    context = testctx.TestCtx()
    yield context
    if context.getpriv() is not None:
        context._close()


def connect(ctx: testctx.TestCtx, ip: str) -> None:
    """testctx's own _connect closes the connection on NOREPLY, which @noreply returns."""
    ctx._negotiate()
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    ctx._stage = Milter.M_CONNECT
    assert Milter.connect_callback(ctx, "client.example", family, (ip, 40000)) in {
        Milter.CONTINUE,
        Milter.NOREPLY,
    }
    ctx._stage = Milter.M_HELO
    assert ctx._priv.hello("client.example") in {Milter.CONTINUE, Milter.NOREPLY}
    ctx._stage = None


def feed(
    ctx: testctx.TestCtx, sender: str, rcpts: list[str], headers: list[tuple[str, str]], body: bytes
) -> int:
    """Drive the callbacks as libmilter does; stop at the first answer that ends it."""
    for step in (lambda: ctx._envfrom(sender), *[lambda r=r: ctx._envrcpt(r) for r in rcpts]):
        rc = step()
        if rc not in (Milter.CONTINUE, Milter.NOREPLY):
            return rc
    ctx._msg = email.message.Message()  # where testctx applies header changes
    for name, value in headers:
        ctx._header(name, value)
        ctx._msg[name] = value
    ctx._eoh()
    rc = ctx._priv.body(body)
    if rc != Milter.CONTINUE:
        return rc
    return ctx._eom()


def test_registered_client_is_accepted(ctx: testctx.TestCtx, recorder: FakeRecorder) -> None:
    ctx._setsymval("i", "4ABCDE")
    connect(ctx, "192.0.2.10")
    rc = feed(ctx, "<a@example.com>", ["<r@example.org>"], [("From", "a@example.com")], b"hi\r\n")
    assert rc == Milter.ACCEPT
    assert recorder.records[-1].queue_id == "4ABCDE"
    assert ctx._msg["X-Osfmilter"].startswith("node=test-node; qid=4ABCDE; virus=off")


def test_unregistered_client_gets_setreply_550(ctx: testctx.TestCtx) -> None:
    connect(ctx, "198.51.100.7")
    rc = ctx._envfrom("<a@example.com>")
    assert rc == Milter.REJECT
    assert ctx._reply[:2] == ("550", "5.7.1")


def test_auth_authen_macro_authorizes(ctx: testctx.TestCtx) -> None:
    connect(ctx, "198.51.100.7")
    ctx._setsymval("{auth_authen}", "bob")
    assert ctx._envfrom("<a@example.com>") == Milter.CONTINUE


def test_auth_author_is_not_authentication(ctx: testctx.TestCtx) -> None:
    connect(ctx, "198.51.100.7")
    ctx._setsymval("{auth_author}", "bob")
    assert ctx._envfrom("<a@example.com>") == Milter.REJECT


def test_recipient_limit_is_tempfail_452(ctx: testctx.TestCtx) -> None:
    connect(ctx, "192.0.2.10")
    assert ctx._envfrom("<a@other.example>") == Milter.CONTINUE
    rcs = [ctx._envrcpt(f"<r{i}@example.org>") for i in range(6)]
    assert rcs == [Milter.CONTINUE] * 5 + [Milter.TEMPFAIL]
    assert ctx._reply[:2] == ("452", "4.5.3")


def test_database_down_is_tempfail_451(ctx: testctx.TestCtx, directory: FakeDirectory) -> None:
    directory.down = True
    connect(ctx, "192.0.2.10")
    assert ctx._envfrom("<a@example.com>") == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.3.0")


def test_percent_in_reply_text_is_doubled_for_libmilter(ctx: testctx.TestCtx) -> None:
    connect(ctx, "198.51.100.7")
    assert ctx._envfrom("<a%b@example.com>", "SIZE=99999999999") == Milter.REJECT
    text = ctx._reply[2]
    assert "%" not in text.replace("%%", "")


text_or_bytes = st.one_of(st.text(max_size=200), st.binary(max_size=200))


@settings(max_examples=150, deadline=None)
@given(
    client=st.one_of(st.just("192.0.2.10"), st.ip_addresses().map(str)),
    sender=text_or_bytes,
    params=st.lists(text_or_bytes, max_size=3),
    login=st.one_of(st.none(), st.text(max_size=50)),
    rcpts=st.lists(text_or_bytes, max_size=8),
    headers=st.lists(st.tuples(st.text(min_size=1, max_size=30), text_or_bytes), max_size=8),
    body=st.binary(max_size=500),
)
def test_any_input_gets_a_valid_milter_response(
    client: str,
    sender: str | bytes,
    params: list[str | bytes],
    login: str | None,
    rcpts: list[str | bytes],
    headers: list[tuple[str, str | bytes]],
    body: bytes,
) -> None:
    directory = FakeDirectory(by_address={"192.0.2.10": identity()})
    Milter.factory = lambda: OsfMilter(services(directory, FakeRecorder()))
    ctx = testctx.TestCtx()
    try:
        connect(ctx, client)
        if login is not None:
            ctx._setsymval("{auth_authen}", login)
        milter = ctx._priv
        ctx._stage = Milter.M_ENVFROM
        results = [milter.envfrom(sender, *params)]
        ctx._stage = Milter.M_ENVRCPT
        results += [milter.envrcpt(r) for r in rcpts]
        if results[0] == Milter.CONTINUE:
            results += [milter.header(name, value) for name, value in headers]
            results += [milter.eoh(), milter.body(body)]
            ctx._stage = Milter.M_EOM
            ctx._msg, ctx._body = email.message.Message(), io.BytesIO()
            results.append(milter.eom())
        assert set(results) <= VALID
        if Milter.TEMPFAIL in results or Milter.REJECT in results:
            assert ctx._reply is not None
            assert str(ctx._reply[0])[0] in "45"
            # A deliberate answer, never the untrapped-exception one.
            assert ctx._reply[1] != "4.3.0", ctx._reply
    finally:
        ctx._close()


class StrictCtx(testctx.TestCtx):  # type: ignore[misc]
    """libmilter's smfi_setsymlist binding takes str only (testctx takes bytes too)."""

    def setsymlist(self, stage: int, macros: object) -> None:
        if not isinstance(macros, str):
            raise TypeError(f"setsymlist() argument 2 must be str, not {type(macros).__name__}")
        super().setsymlist(stage, macros)


def test_negotiation_takes_effect_with_libmilters_setsymlist(
    directory: FakeDirectory, recorder: FakeRecorder
) -> None:
    """A failed negotiate falls back to all options silently: every header then waits."""
    Milter.factory = lambda: OsfMilter(services(directory, recorder))
    context = StrictCtx()
    context._negotiate()
    negotiated = context._opts[1]
    for skipped_reply in (Milter.P_NR_CONN, Milter.P_NR_HELO, Milter.P_NR_HDR, Milter.P_NR_EOH):
        assert negotiated & skipped_reply
    assert negotiated & Milter.P_NOUNKNOWN
    # DATA is answered: the answer carries the ACK Postfix's next write waits for.
    assert not negotiated & (Milter.P_NODATA | Milter.P_NR_DATA)
    assert context._symlist[Milter.M_ENVFROM] == {b"i", b"{auth_authen}"}


class RefusingHeadersCtx(testctx.TestCtx):  # type: ignore[misc]
    """An MTA that refuses the header changes (libmilter's smfi_addheader fails)."""

    def addheader(self, field: str, value: str, idx: int) -> None:
        raise Milter.error("cannot add header")


def test_a_message_whose_headers_cannot_be_changed_is_tempfailed_and_not_counted(
    directory: FakeDirectory,
    recorder: FakeRecorder,
) -> None:
    """Counted if and only if the final answer is an accept.

    The accept used to be committed before the headers were changed: the
    client got 451 while the event said accepted, and its slot and volume
    were charged, so the retry counted twice.
    """
    clock = FixedClock()
    limiter = MemoryLimiter(clock)
    Milter.factory = lambda: OsfMilter(services(directory, recorder, clock=clock, limiter=limiter))
    context = RefusingHeadersCtx()
    try:
        connect(context, "192.0.2.10")
        rc = feed(
            context, "<a@example.com>", ["<r@example.org>"], [("From", "a@example.com")], b"hi\r\n"
        )
    finally:
        context._close()
    assert rc == Milter.TEMPFAIL and context._reply[:2] == ("451", "4.3.0")
    assert [r.reason for r in recorder.records] == ["internal_error"]
    assert recorder.volume == {}
    assert limiter.counting("server:192.0.2.0/24") == 0
    assert not any(limiter.slots.values())  # the reservation was given back


def test_a_fault_while_spooling_headers_is_one_decision_at_once(
    directory: FakeDirectory,
    recorder: FakeRecorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """header/eoh send no reply: their fault used to leave no event and no decision line,
    and the rate slot stayed held until the next MAIL."""
    clock = FixedClock()
    limiter = MemoryLimiter(clock)
    Milter.factory = lambda: OsfMilter(services(directory, recorder, clock=clock, limiter=limiter))

    def disk_full(self: Spool, name: str, value: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    context = testctx.TestCtx()
    try:
        connect(context, "192.0.2.10")
        assert context._envfrom("<a@example.com>") == Milter.CONTINUE
        assert context._envrcpt("<r@example.org>") == Milter.CONTINUE
        monkeypatch.setattr(Spool, "header", disk_full)
        with caplog.at_level(logging.INFO, logger="osfmilter.decision"):
            context._header("From", "a@example.com")
            context._header("Subject", "hi")
        # Decided at the fault: one event, one decision line, the slot given back.
        assert [(r.stage, r.reason) for r in recorder.records] == [("header", "internal_error")]
        assert len([r for r in caplog.records if r.name == "osfmilter.decision"]) == 1
        assert not any(limiter.slots.values())
        context._eoh()
        assert context._priv.body(b"hi\r\n") == Milter.TEMPFAIL
        context._msg, context._body = email.message.Message(), io.BytesIO()
        assert context._eom() == Milter.TEMPFAIL
        assert context._reply[:2] == ("451", "4.3.0")
        assert len(recorder.records) == 1
        monkeypatch.undo()
        # The next transaction of the connection is judged on its own.
        assert context._envfrom("<a@example.com>") == Milter.CONTINUE
    finally:
        context._close()


def test_a_fault_before_mail_is_never_a_5xx_later(
    directory: FakeDirectory,
    recorder: FakeRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connect that could not note the client used to be forgotten at MAIL: 550 5.7.1."""

    def broken(client: str) -> None:
        raise ValueError("cannot parse the client address")

    monkeypatch.setattr("osfmilter.session.connection.normalize_client", broken)
    Milter.factory = lambda: OsfMilter(services(directory, recorder))
    context = testctx.TestCtx()
    try:
        connect(context, "192.0.2.10")
        for _ in range(2):  # every transaction of the connection, each one decision
            assert context._envfrom("<a@example.com>") == Milter.TEMPFAIL
            assert context._reply[:2] == ("451", "4.3.0")
            assert context._envrcpt("<r@example.org>") == Milter.TEMPFAIL
    finally:
        context._close()
    assert [(r.stage, r.reason) for r in recorder.records] == [("connect", "internal_error")] * 2
