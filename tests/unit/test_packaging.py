"""The wheel holds every package: a non-editable install (install-relay) imports them all."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_every_package_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "osfmilter").rglob("__init__.py")
    }
    listed = set(setuptools["packages"])
    assert on_disk - listed == set(), "add them to [tool.setuptools] packages"
    assert {name for name in listed if name.startswith("osfmilter.migrations")} == set(
        setuptools["package-dir"]
    )
