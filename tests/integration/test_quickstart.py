"""The configuration scripts/quickstart writes, judged by check-config as it runs it.

The quick start itself installs packages and stays up, so the test takes its
configuration text from the script and its Postfix settings from the harness
the script uses.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from string import Template

import pytest

from tests.harness.postfix import PostfixInstance

pytestmark = pytest.mark.integration

QUICKSTART = Path(__file__).parents[2] / "scripts" / "quickstart"


def quickstart_config(run: Path, milter_port: int) -> str:
    script = QUICKSTART.read_text()
    match = re.search(r'^cat > "\$CONFIG" <<TOML\n(.*?)^TOML$', script, re.S | re.M)
    assert match, "scripts/quickstart no longer writes its config with a TOML here-document"
    return Template(match[1]).substitute(RUN=run, MILTER_PORT=milter_port)


def test_quickstart_config_passes_check_config_with_scanning_off_on_purpose(
    tmp_path: Path,
) -> None:
    config_text = quickstart_config(tmp_path, 8894)
    assert re.search(r"^#.*scanning is off on purpose", config_text, re.M), config_text
    config = tmp_path / "osfmilter.toml"
    config.write_text(config_text)
    postfix = PostfixInstance(tmp_path / "postfix", smtpd_port=2525, relay_port=2526,
                              milter="inet:8894@127.0.0.1", name="osf-quickstart")
    postfix.write_config()
    result = subprocess.run(
        [sys.executable, "-m", "osfmilter", "--config", str(config), "check-config",
         "--postfix-config", str(postfix.config_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning: [clamav] address: empty" in result.stdout
