"""scripts/install-relay on a fresh Debian 12 root, as the README's deployment section runs it.

The root is debootstrap's (tests/harness/debian_root.py, cached outside the
clone); the clone is copied in and the script run there with chroot, as
``install-relay --no-start --configure-postfix``: no systemd runs in a
chroot, so the units are enabled and not started, and neither is clamd.
check-config reads clamd.conf and does not call clamd, so it passes;
``osfmilter health``, which does call it, reports clamd down and the
database up. Then a second run must change nothing under /etc, and
--uninstall must remove the code and the units and leave config and data.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from osfmilter import __version__
from tests.harness.debian_root import chroot, mounted, overlay, relay_tree

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "scripts" / "install-relay"
CONTRIB = REPO / "contrib"
INSIDE = "/root/osfmilter"  # the clone, in the root
RUN = (f"{INSIDE}/scripts/install-relay", "--no-start", "--configure-postfix")
# Not part of the clone as pip installs it.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", ".cache", "__pycache__", "*.egg-info", "build", ".*_cache"
)


# path -> (mode, owner, group, content digest or link target)
Entries = dict[str, tuple[int, int, int, str]]


def etc_state(root: Path) -> Entries:
    """Every entry under the root's /etc: mode, owner, group and content (or link target)."""
    state = {}
    for directory, dirs, files in os.walk(root / "etc"):
        for name in dirs + files:
            path = Path(directory, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = f"-> {path.readlink()}"
            elif stat.S_ISREG(info.st_mode):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = ""
            state[str(path.relative_to(root))] = (
                info.st_mode,
                info.st_uid,
                info.st_gid,
                content,
            )
    return state


def changed(before: Entries, after: Entries) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


class Relay:
    def __init__(self, root: Path, first_run: str) -> None:
        self.root = root
        self.first_run = first_run

    def run(self, *command: str, check: bool = True) -> str:
        result = chroot(self.root, *command, check=check)
        return result.stdout + result.stderr

    def id_of(self, database: str, name: str) -> int:
        return int(self.run("getent", database, name).split(":")[2])

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")


@pytest.fixture(scope="module")
def relay() -> Iterator[Relay]:
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap, mount and chroot")
    if shutil.which("debootstrap") is None:
        pytest.skip("no debootstrap: run scripts/install-deps")
    with overlay(relay_tree(SCRIPT)) as root:
        shutil.copytree(REPO, root / INSIDE.lstrip("/"), ignore=NOT_COPIED)
        with mounted(root):
            result = chroot(root, *RUN)
            yield Relay(root, result.stdout + result.stderr)


def test_installs_osfmilter_in_its_virtualenv(relay: Relay) -> None:
    assert relay.run("/opt/osfmilter/bin/osfmilter", "--version").strip() == (
        f"osfmilter {__version__}"
    )
    assert relay.path("/usr/local/bin/osfmilter").readlink() == Path("/opt/osfmilter/bin/osfmilter")
    assert relay.run("osfmilter", "--version").strip() == f"osfmilter {__version__}"
    # Not editable: the code is in the virtualenv, not read from the clone.
    location = relay.run(
        "/opt/osfmilter/bin/python", "-c", "import osfmilter; print(osfmilter.__file__)"
    )
    assert location.startswith("/opt/osfmilter/lib/"), location
    assert "not starting anything (--no-start)" in relay.first_run


def test_creates_the_user_and_group(relay: Relay) -> None:
    passwd = relay.run("getent", "passwd", "osfmilter").strip().split(":")
    assert passwd[5] == "/var/lib/osfmilter"
    assert passwd[6] in {"/usr/sbin/nologin", "/bin/false"}
    assert int(passwd[2]) < 1000  # a system user
    assert relay.run("getent", "group", "osfmilter")
    groups = relay.run("id", "-nG", "osfmilter").split()
    assert {"osfmilter", "postfix", "clamav"} <= set(groups)


def test_installs_the_config_once_with_clamd_set(relay: Relay) -> None:
    config = relay.path("/etc/osfmilter/osfmilter.toml")
    info = config.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == (0, relay.id_of("group", "osfmilter"))
    directory = config.parent.stat()
    assert stat.S_IMODE(directory.st_mode) == 0o750
    assert directory.st_gid == relay.id_of("group", "osfmilter")
    # contrib's file, with clamd's Debian socket in [clamav] and nothing else changed.
    shipped = (CONTRIB / "osfmilter.toml").read_text().splitlines()
    installed = config.read_text().splitlines()
    assert [(a, b) for a, b in zip(shipped, installed, strict=True) if a != b] == [
        ('address = ""', 'address = "/run/clamav/clamd.ctl"')
    ]
    clamav = installed.index("[clamav]")
    assert installed.index('address = "/run/clamav/clamd.ctl"') > clamav


def test_installs_and_enables_the_units(relay: Relay) -> None:
    units = sorted(path.name for path in (CONTRIB / "systemd").glob("*.service"))
    assert "osfmilter.service" in units
    for name in units:
        installed = relay.path(f"/etc/systemd/system/{name}")
        assert installed.read_text() == (CONTRIB / "systemd" / name).read_text()
        wants = relay.path(f"/etc/systemd/system/multi-user.target.wants/{name}")
        if name.endswith("@.service"):
            assert not wants.exists()  # a template: its instances are the operator's
        else:
            assert wants.readlink() == Path(f"/etc/systemd/system/{name}")
            assert relay.run("systemctl", "is-enabled", name).strip() == "enabled"


def test_applies_contrib_postfix_and_keeps_the_old_files(relay: Relay) -> None:
    settings = relay.run("postconf", "-n").splitlines()
    assert "smtpd_milters = inet:127.0.0.1:8894" in settings
    assert "milter_default_action = tempfail" in settings
    assert "smtpd_tls_cert_file = /etc/osfmilter/tls/fullchain.pem" in settings
    services = relay.run("postconf", "-P").splitlines()
    assert "2525/inet/smtpd_sasl_auth_enable = yes" in services
    assert "smtp/inet/smtpd_sasl_auth_enable = yes" in services
    saved = relay.path("/etc/postfix.before-osfmilter")
    assert (saved / "main.cf").exists() and (saved / "master.cf").exists()
    assert "smtpd_milters" not in (saved / "main.cf").read_text()
    # Until the relay's own certificate: Debian's self-signed one, linked.
    for name, target in (
        ("fullchain.pem", "/etc/ssl/certs/ssl-cert-snakeoil.pem"),
        ("privkey.pem", "/etc/ssl/private/ssl-cert-snakeoil.key"),
    ):
        assert relay.path(f"/etc/osfmilter/tls/{name}").readlink() == Path(target)
        assert relay.path(target).is_file()


def test_merges_clamds_limits_and_installs_dovecots_service(relay: Relay) -> None:
    clamd = relay.path("/etc/clamav/clamd.conf").read_text()
    for line in ("StreamMaxLength 51M", "MaxFileSize 64M", "MaxScanSize 200M"):
        assert re.search(rf"(?m)^{line}$", clamd), line
    assert len(re.findall(r"(?m)^StreamMaxLength ", clamd)) == 1
    assert relay.path("/etc/clamav/clamd.conf.before-osfmilter").exists()
    dovecot = relay.path("/etc/dovecot/dovecot.conf").read_text()
    assert dovecot == (CONTRIB / "dovecot" / "dovecot.conf").read_text()
    assert relay.path("/etc/dovecot/dovecot.conf.before-osfmilter").exists()
    sql = relay.path("/etc/dovecot/osfmilter-sql.conf.ext")
    assert sql.read_text() == (CONTRIB / "dovecot" / "osfmilter-sql-sqlite.conf.ext").read_text()
    assert stat.S_IMODE(sql.stat().st_mode) == 0o600
    # Debian's Dovecot reads it as installed.
    assert "  args = /etc/dovecot/osfmilter-sql.conf.ext\n" in relay.run("doveconf", "-n")


def test_check_config_passes_and_the_schema_is_there(relay: Relay) -> None:
    report = relay.run(
        "osfmilter",
        "--config",
        "/etc/osfmilter/osfmilter.toml",
        "check-config",
        "--postfix-config",
        "/etc/postfix",
        "--clamd-config",
        "/etc/clamav/clamd.conf",
    )
    assert not [line for line in report.splitlines() if line.startswith("error:")], report
    assert report.splitlines()[-1] == "configuration is valid", report
    database = relay.path("/var/lib/osfmilter/osfmilter.sqlite3")
    assert database.stat().st_uid == relay.id_of("passwd", "osfmilter")
    # Nothing runs in the chroot: health, which asks clamd, says it is down.
    health = chroot(
        relay.root,
        "env",
        "OSFMILTER_CONFIG=/etc/osfmilter/osfmilter.toml",
        "STATE_DIRECTORY=/var/lib/osfmilter",
        "osfmilter",
        "health",
        check=False,
    )
    assert health.returncode == 1, health.stdout + health.stderr
    lines = {line.split()[0]: line.split()[1] for line in health.stdout.splitlines()}
    assert lines["database"] == "up" and lines["clamav"] == "down", health.stdout


def test_a_second_run_installs_the_new_code_and_changes_nothing_in_etc(relay: Relay) -> None:
    # New code under the same version number, as a newer clone has.
    marker = "# a newer clone\n"
    with relay.path(f"{INSIDE}/osfmilter/__init__.py").open("a") as source:
        source.write(marker)
    before = etc_state(relay.root)
    output = relay.run(*RUN)
    assert changed(before, etc_state(relay.root)) == [], output
    assert "Postfix was configured before" in output
    installed = relay.path("/opt/osfmilter/lib/python3.11/site-packages/osfmilter/__init__.py")
    assert installed.read_text().endswith(marker)
    assert relay.run("osfmilter", "--version").strip() == f"osfmilter {__version__}"


def test_uninstall_removes_code_and_units_and_leaves_config_and_data(relay: Relay) -> None:
    output = relay.run(f"{INSIDE}/scripts/install-relay", "--uninstall")
    assert not relay.path("/opt/osfmilter").exists()
    assert not relay.path("/usr/local/bin/osfmilter").is_symlink()
    assert not list(relay.path("/etc/systemd/system").rglob("osfmilter*")), output
    assert relay.path("/etc/osfmilter/osfmilter.toml").is_file()
    assert relay.path("/var/lib/osfmilter/osfmilter.sqlite3").is_file()
    assert relay.run("getent", "passwd", "osfmilter")
    # Postfix keeps the milter (and tempfails) until asked to restore its files.
    assert "--restore-postfix" in output
    assert "smtpd_milters = inet:127.0.0.1:8894" in relay.run("postconf", "-n").splitlines()
    relay.run(f"{INSIDE}/scripts/install-relay", "--uninstall", "--restore-postfix")
    assert "smtpd_milters" not in relay.run("postconf", "-n")
    assert not relay.path("/etc/postfix.before-osfmilter").exists()


def test_a_set_up_check_config_refuses_is_not_started_or_enabled(relay: Relay) -> None:
    """After the uninstall above: Debian's own Postfix settings, and no --configure-postfix."""
    result = chroot(relay.root, f"{INSIDE}/scripts/install-relay", "--no-start", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "error: postfix message_size_limit" in output
    assert "check-config refused the set-up (above): nothing started" in output
    assert "--configure-postfix" in output
    assert not relay.path("/etc/systemd/system/multi-user.target.wants/osfmilter.service").exists()
