"""The milter's listening socket as osfmilter opens it through libmilter.

libmilter's state is process-wide, so each case runs in a fresh interpreter.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from osfmilter.cli import main
from osfmilter.errors import ConfigError
from osfmilter.milter import runner
from tests.harness.ports import free_port

OPEN_AND_REPORT = """
import socket, sys
import milter
from osfmilter.milter import runner
runner._open_socket_our_way()
milter.setconn(sys.argv[1])
milter.register("osfmilter-test")
milter.opensocket(True)
for fd, _ in runner._open_sockets():
    sock = socket.socket(fileno=fd)
    if sock.family == socket.AF_INET:
        print("nodelay", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    sock.detach()
"""


def open_socket(spec: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_AND_REPORT, spec],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_a_tcp_socket_hands_tcp_nodelay_to_its_connections() -> None:
    """Else Nagle holds the verdict behind a header change for the MTA's delayed ACK."""
    assert open_socket(f"inet:{free_port()}@127.0.0.1").split() == ["nodelay", "1"]


def test_a_unix_socket_is_created_0660(tmp_path: Path) -> None:
    path = tmp_path / "milter.sock"
    assert open_socket(f"unix:{path}") == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o660


def test_a_socket_directory_that_cannot_be_made_is_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/osfmilter.sqlite3"\n'
        '[milter]\nsocket = "unix:/proc/nonexistent/x.sock"\n'
    )
    assert main(["--config", str(config), "run"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(
        "osfmilter: error: [milter] socket: cannot create its directory /proc/nonexistent: "
        "No such file or directory\n"
    )
    assert err.count("\n") == 1


def test_a_file_in_the_way_of_the_socket_directory_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"^\[milter\] socket: cannot create .*: Not a directory"):
        runner.prepare_socket_directory(tmp_path / "file" / "run", "")
