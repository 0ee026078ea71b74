"""``osfmilter web``: a public listen address needs allow_public_bind."""

from __future__ import annotations

from pathlib import Path

import pytest

from osfmilter.cli import main


def test_web_refuses_a_public_listen_without_allow_public_bind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "osfmilter.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n[web]\nlisten = "0.0.0.0:8025"\n')
    assert main(["--config", str(config), "web"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "web.allow_public_bind = true" in err
