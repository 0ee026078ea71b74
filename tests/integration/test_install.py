"""What scripts/install-deps leaves on the machine besides the virtualenv.

The tests and the quick start start their own daemons on loopback; the
system copies that Debian's packages bring (Prometheus on :9090 on every
interface, clamd, spamd, rspamd, Postfix, nginx) must stay disabled, so that a
reboot of a machine the script ran on does not start them either.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration

SYSTEM_DAEMONS = ("prometheus", "clamav-daemon", "spamd", "rspamd", "postfix", "nginx")


@pytest.mark.parametrize("unit", SYSTEM_DAEMONS)
def test_install_deps_leaves_system_daemons_disabled(unit: str) -> None:
    if shutil.which("systemctl") is None:
        pytest.skip("no systemctl on this machine")
    state = subprocess.run(
        ["systemctl", "is-enabled", f"{unit}.service"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    assert state != "enabled", f"{unit}.service is enabled after install-deps"
