"""How the milter process presents itself to the host: its socket, its logs, its secrets."""

from __future__ import annotations

import grp
import shutil
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.contrib import contrib_main_cf
from tests.harness.milter import MilterProcess
from tests.harness.postfix import PostfixInstance
from tests.harness.sink import Sink
from tests.harness.smtpclient import make_message, send

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="osfops-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def register(database_url: str) -> None:
    from datetime import UTC, datetime

    from osfmilter.config import Config
    from osfmilter.storage import admin
    from osfmilter.storage.db import make_engine, upgrade
    from osfmilter.storage.domains import add_domain
    from osfmilter.storage.store import SqlStore
    from tests.fakes import TEST_REGISTRATION

    engine = make_engine(database_url, Config().database.timeout)
    upgrade(engine)
    with SqlStore(engine).session() as session:
        now = datetime.now(UTC)
        admin.add_customer(session, "ops", "free", now)
        add_domain(session, "ops.example", "ops", now)
        admin.add_server(session, "192.0.2.70", "ops", TEST_REGISTRATION, now)
    engine.dispose()


class SyslogReceiver:
    """A unix datagram socket standing in for /dev/log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.lines: list[str] = []
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                self.lines.append(self.sock.recv(65536).decode(errors="replace"))
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def test_unix_socket_is_0660_for_the_configured_group_and_logs_go_to_syslog(
    scratch: Path,
) -> None:
    database = f"sqlite:///{scratch}/ops.sqlite3"
    register(database)
    socket_path = scratch / "run" / "milter.sock"
    syslog = SyslogReceiver(scratch / "log.sock")
    milter = MilterProcess(
        scratch / "milter",
        database,
        extra_config=f'[log]\ntarget = "syslog"\nsyslog_address = "{syslog.path}"\n',
    )
    # MilterProcess writes an inet socket line; a unix socket replaces it here.
    milter.config_path.write_text(
        milter.config_path.read_text().replace(
            f'socket = "inet:{milter.port}@127.0.0.1"',
            f'socket = "unix:{socket_path}"\nsocket_group = "postfix"',
        )
    )
    milter.start_unix(socket_path)
    try:
        mode = socket_path.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o660
        assert grp.getgrgid(mode.st_gid).gr_name == "postfix"
        with (
            Sink() as sink,
            PostfixInstance(
                scratch / "postfix",
                relay_port=sink.port,
                milter=f"unix:{socket_path}",
                extra_main_cf=contrib_main_cf(),
                name="osf-ops",
            ) as postfix,
        ):
            data = make_message("a@ops.example", ["b@example.org"], "via unix", "hi\r\n")
            assert send(
                postfix.smtpd_port,
                "a@ops.example",
                ["b@example.org"],
                data,
                client_addr="192.0.2.70",
            ).accepted
            sink.wait_for(lambda msgs: len(msgs) == 1)
        decisions = [line for line in syslog.lines if "osfmilter.decision" in line]
        assert len(decisions) == 1 and "action=accept" in decisions[0]
        assert decisions[0].startswith("<2")  # facility mail (2), as syslog's PRI <2x>
    finally:
        milter.stop()
        syslog.close()
