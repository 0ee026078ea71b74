"""scripts/quickstart as a newcomer uses it: an accept, a refusal, a restart, the CLI, the portal.

And the configuration it writes, judged by check-config as it runs it.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from string import Template

import pytest

from tests.harness.ports import free_port
from tests.harness.postfix import PostfixInstance

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "scripts" / "quickstart"


@pytest.fixture
def quickstart() -> Iterator[tuple[Path, dict[str, str]]]:
    run = Path(tempfile.mkdtemp(prefix="osfqs-", dir="/tmp"))
    env = {
        **os.environ,
        "OSF_RUN": str(run),
        "OSF_SMTP_PORT": str(free_port()),
        "OSF_SINK_PORT": str(free_port()),
        "OSF_MILTER_PORT": str(free_port()),
        "OSF_WEB_PORT": str(free_port()),
    }
    env.pop("OSFMILTER_CONFIG", None)
    try:
        yield run, env
    finally:
        subprocess.run(
            [str(ROOT / "scripts/quickstart"), "stop"], env=env, check=False, capture_output=True
        )
        shutil.rmtree(run, ignore_errors=True)


def start(env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(ROOT / "scripts/quickstart")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def printed_swaks(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("swaks ")]


def shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_quickstart_shows_an_accept_and_a_refusal_and_keeps_them(
    quickstart: tuple[Path, dict[str, str]],
) -> None:
    run, env = quickstart
    output = start(env)
    if shutil.which("swaks") is None:
        pytest.skip("no swaks on this machine")
    accept, refusal, login = printed_swaks(output)
    assert "250 2.0.0 Ok: queued" in shell(accept, env).stdout
    assert "550 5.7.1 relay not permitted for 127.0.0.2" in shell(refusal, env).stdout
    [delivered] = wait_for_files(run / "sink")
    assert b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=example.com;" in (
        delivered.read_bytes()
    )
    # The SASL line as printed: from the unregistered 127.0.0.2, STARTTLS, AUTH PLAIN.
    assert "--local-interface 127.0.0.2 --tls --auth PLAIN" in login
    session = shell(login, env).stdout
    assert "235 2.7.0 Authentication successful" in session, session
    assert "250 2.0.0 Ok: queued" in session, session
    assert len(wait_for_files(run / "sink", count=2)) == 2
    log = run / "osfmilter.log"
    assert log.read_text().count("osfmilter.decision") == 3
    assert "sasl:app@example.com" in log.read_text()
    password = (run / "sasl-password").read_text().strip()
    assert re.fullmatch(r"[a-z2-7]{32}", password) and f"--auth-password {password} " in login
    assert (run / "sasl-password").stat().st_mode & 0o077 == 0
    assert password not in log.read_text()

    restarted = start(env)  # a restart appends to the log: the decisions are still there
    assert log.read_text().count("osfmilter.decision") == 3
    # and keeps the demo account's password
    assert printed_swaks(restarted)[2] == login

    # The portal it prints, with the demo user's login, lets that user in.
    url, email, portal_password = printed_portal(output)
    assert url == f"http://127.0.0.1:{env['OSF_WEB_PORT']}/"
    assert email == "demo@example.com"
    assert portal_password == (run / "portal-password").read_text().strip()
    assert (run / "portal-password").stat().st_mode & 0o077 == 0
    assert printed_portal(restarted) == (url, email, portal_password)
    assert log_in(int(env["OSF_WEB_PORT"]), email, portal_password) == (303, "/")
    assert log_in(int(env["OSF_WEB_PORT"]), email, "not-" + portal_password)[0] == 401
    assert portal_password not in (run / "web.log").read_text()

    # The line it prints makes the README's `osfmilter ...` examples work as written.
    assert f". {run}/env" in output
    listed = shell(f". {run}/env && osfmilter server list && osfmilter report refused", env)
    assert listed.returncode == 0, listed.stderr
    assert "127.0.0.1/32  demo" in listed.stdout
    assert "unregistered:127.0.0.2" in listed.stdout


def printed_portal(output: str) -> tuple[str, str, str]:
    """The portal's address, and the e-mail address and password it says to log in with."""
    [url] = re.findall(r"^The portal: +(http://\S+)", output, re.MULTILINE)
    [(email, password)] = re.findall(
        r"^ +log in as (\S+) with the password (\S+)$", output, re.MULTILINE
    )
    return url, email, password


class _HiddenInputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        fields = dict(attrs)
        if tag == "input" and fields.get("type") == "hidden" and fields.get("name"):
            self.values[str(fields["name"])] = fields.get("value") or ""


def log_in(port: int, email: str, password: str) -> tuple[int, str]:
    """GET /login for its cookie and CSRF field, POST the form: status and Location."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/login")
        page = connection.getresponse()
        assert page.status == 200, page.status
        form = _HiddenInputs()
        form.feed(page.read().decode())
        assert "csrf_token" in form.values, form.values
        cookies = "; ".join(
            header.split(";", 1)[0] for header in page.headers.get_all("Set-Cookie") or []
        )
        body = urllib.parse.urlencode({**form.values, "email": email, "password": password})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies}
        connection.request("POST", "/login", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status, answer.getheader("Location", "")
    finally:
        connection.close()


def wait_for_files(directory: Path, count: int = 1, timeout: float = 30.0) -> list[Path]:
    """What smtp-sink wrote there, once there are ``count`` files (Postfix delivers later)."""
    deadline = time.monotonic() + timeout
    while len(found := sorted(directory.glob("*"))) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def quickstart_config(run: Path, milter_port: int) -> str:
    script = QUICKSTART.read_text()
    match = re.search(r'^cat > "\$CONFIG" <<TOML\n(.*?)^TOML$', script, re.S | re.M)
    assert match, "scripts/quickstart no longer writes its config with a TOML here-document"
    return Template(match[1]).substitute(RUN=run, MILTER_PORT=milter_port, WEB_PORT=8025)


def test_quickstart_config_passes_check_config_with_scanning_off_on_purpose(
    tmp_path: Path,
) -> None:
    config_text = quickstart_config(tmp_path, 8894)
    assert re.search(r"^#.*scanning is off on purpose", config_text, re.M), config_text
    config = tmp_path / "osfmilter.toml"
    config.write_text(config_text)
    postfix = PostfixInstance(
        tmp_path / "postfix",
        smtpd_port=2525,
        relay_port=2526,
        milter="inet:8894@127.0.0.1",
        name="osf-quickstart",
    )
    postfix.write_config()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "osfmilter",
            "--config",
            str(config),
            "check-config",
            "--postfix-config",
            str(postfix.config_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: [clamav] address: empty" in result.stdout
