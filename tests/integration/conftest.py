"""A relay as operators run it: a private Postfix, the milter process, a sink."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from osfmilter.cli import main
from osfmilter.config import Config
from osfmilter.storage import admin
from osfmilter.storage.db import make_engine
from osfmilter.storage.domains import add_domain
from osfmilter.storage.schema import (
    Event,
    RateSlot,
    ReputationEvidence,
    SaslAccount,
    SmtpServer,
    StateChange,
)
from osfmilter.storage.store import SqlStore
from tests.fakes import TEST_REGISTRATION
from tests.harness.clamd import ClamdProcess
from tests.harness.contrib import SaslWiring, contrib_main_cf
from tests.harness.database import reset_database
from tests.harness.dovecot import DovecotAuth
from tests.harness.milter import MilterProcess
from tests.harness.postfix import PostfixInstance
from tests.harness.sink import Sink, message_id_of
from tests.harness.spamd import SpamdProcess
from tests.harness.tls import TestCertificate, make_certificate


@dataclass
class Relay:
    """Everything a test needs to send through the relay and look behind it."""

    postfix: PostfixInstance
    milter: MilterProcess
    sink: Sink
    store: SqlStore
    #: With running_relay(sasl=True): Dovecot checks AUTH, smtpd offers STARTTLS.
    dovecot: DovecotAuth | None = None
    certificate: TestCertificate | None = None

    @property
    def port(self) -> int:
        return self.postfix.smtpd_port

    def register(
        self,
        customer: str,
        plan: str = "free",
        domains: tuple[str, ...] = (),
        servers: tuple[str, ...] = (),
        logins: tuple[str, ...] = (),
    ) -> None:
        now = datetime.now(UTC)
        with self.store.session() as session:
            admin.add_customer(session, customer, plan, now)
            for domain in domains:
                add_domain(session, domain, customer, now)
            for server in servers:
                admin.add_server(session, server, customer, TEST_REGISTRATION, now)
            for login in logins:
                admin.add_sasl(session, login, customer, now)

    def age_rate_windows(self, seconds: float) -> None:
        """Let time pass for the 5-minute windows: every counting slot grows older."""
        with self.store.session() as session:
            session.execute(
                update(RateSlot).where(RateSlot.pending.is_(False)).values(at=RateSlot.at - seconds)
            )

    def age_reputation(self, delta: timedelta) -> None:
        """Let time pass for the reputation: incidents and state changes grow older."""
        # In Python: SQLite has no date arithmetic on the stored text.
        with self.store.session() as session:
            for identity in [
                *session.scalars(select(SmtpServer)),
                *session.scalars(select(SaslAccount)),
            ]:
                identity.state_changed_at -= delta
                if identity.last_incident_at is not None:
                    identity.last_incident_at -= delta
            for row in [
                *session.scalars(select(ReputationEvidence)),
                *session.scalars(select(StateChange)),
            ]:
                row.at -= delta

    def cli(self, *args: str) -> int:
        """Run an osfmilter command against this relay's database, as an operator would."""
        return main(["--config", str(self.milter.config_path), *args])

    def cli_output(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        """Run an osfmilter command as a process of its own: exit status, stdout, stderr.

        What an operator's terminal shows, untouched by pytest's capturing;
        ``stdin`` is what is typed or piped in (``--password-stdin``).
        """
        result = subprocess.run(
            [sys.executable, "-m", "osfmilter", "--config", str(self.milter.config_path), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return result.returncode, result.stdout, result.stderr

    def events(self, **where: object) -> list[Event]:
        with self.store.session() as session:
            query = select(Event).order_by(Event.id)
            for column, value in where.items():
                query = query.where(getattr(Event, column) == value)
            return list(session.scalars(query))


def message_id(data: bytes) -> str:
    """The Message-ID of a message the test built (make_message always sets one)."""
    found = message_id_of(data)
    assert found is not None, "message without a Message-ID"
    return found


@contextmanager
def running_relay(
    database_url: str,
    milter_database_url: str | None = None,
    *,
    reset: bool = True,
    name: str = "osf-e2e",
    milter_config: str = "",
    sasl: bool = False,
) -> Iterator[Relay]:
    """Start sink, milter and Postfix on an emptied database (``reset``).

    ``milter_database_url`` lets a proxy sit between the milter and the database.
    ``sasl``: a Dovecot on the same database checks AUTH, and Postfix has
    contrib's SASL and TLS settings with a certificate of the test's own.
    """
    workdir = Path(tempfile.mkdtemp(prefix="osfe2e-", dir="/tmp"))
    workdir.chmod(0o755)  # Postfix's unprivileged daemons must reach their queue
    (workdir / "postfix").mkdir()
    engine = make_engine(database_url, Config().database.timeout)
    if reset:
        reset_database(engine)
    try:
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(Sink())
            milter = stack.enter_context(
                MilterProcess(
                    workdir / "milter",
                    milter_database_url or database_url,
                    extra_config=milter_config,
                )
            )
            dovecot = certificate = wiring = None
            if sasl:
                certificate = make_certificate(workdir / "tls")
                dovecot = stack.enter_context(DovecotAuth(workdir / "dovecot", database_url))
                wiring = SaslWiring(certificate, dovecot.postfix_sasl_path)
            postfix = stack.enter_context(
                PostfixInstance(
                    workdir / "postfix",
                    relay_port=sink.port,
                    milter=milter.socket_spec,
                    extra_main_cf=contrib_main_cf(wiring),
                    name=name,
                )
            )
            yield Relay(postfix, milter, sink, SqlStore(engine), dovecot, certificate)
    finally:
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A directory for a module's daemons and databases, reachable by unprivileged users."""
    directory = Path(tempfile.mkdtemp(prefix="osfmod-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def clamd(scratch: Path) -> Iterator[ClamdProcess]:
    """A real clamd on the generated test signatures, for one module."""
    with ClamdProcess(scratch / "clamd") as process:
        yield process


@pytest.fixture(scope="module")
def spamd(scratch: Path) -> Iterator[SpamdProcess]:
    """A real spamd, offline, for one module."""
    with SpamdProcess(scratch / "spamd") as process:
        yield process


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def relay_on(request: pytest.FixtureRequest, name: str, *, sasl: bool = False) -> Iterator[Relay]:
    """A relay on the backend a fixture parametrized with BACKENDS is run for.

    ``sasl``: with Dovecot and STARTTLS, as running_relay's.
    """
    directory = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    if request.param == "sqlite":
        url = f"sqlite:///{directory}/osfmilter.sqlite3"
    else:
        url = request.getfixturevalue("pg_server_url")
    try:
        with running_relay(url, name=name, sasl=sasl) as relay:
            yield relay
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    """One relay on embedded SQLite, shared by a module's tests (start-up costs seconds)."""
    directory = Path(tempfile.mkdtemp(prefix="osfdb-", dir="/tmp"))
    try:
        with running_relay(f"sqlite:///{directory}/osfmilter.sqlite3") as relay:
            yield relay
    finally:
        shutil.rmtree(directory, ignore_errors=True)
