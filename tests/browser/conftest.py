"""The portal in a real browser: ``osfmilter web`` as a process, headless Chromium.

Without Chromium a browser test is skipped, except under
``OSFMILTER_NO_SKIP=1`` (scripts/test, CI), where it fails: the browser is
one of scripts/install-deps's packages, and its absence must not hide.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver import Chrome

from tests.harness import browser
from tests.harness.portal import WebProcess

CUSTOMER = "acme"
EMAIL = "demo@example.com"
PASSWORD = "correct horse battery staple"  # noqa: S105 - the test's own, shown nowhere


@pytest.fixture(scope="module")
def portal() -> Iterator[WebProcess]:
    """One ``osfmilter web`` for a module: customer acme and its portal user."""
    directory = Path(tempfile.mkdtemp(prefix="osfweb-", dir="/tmp"))
    try:
        with WebProcess(directory) as web:
            web.seed(CUSTOMER, EMAIL, PASSWORD)
            yield web
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chrome]:
    """A fresh headless Chromium (no cookies yet) for one test."""
    if (reason := browser.missing()) is not None:
        if os.environ.get("OSFMILTER_NO_SKIP"):
            pytest.fail(reason)
        pytest.skip(reason)
    with browser.headless_chromium(tmp_path / "chromedriver.log") as driver:
        yield driver
