"""Headless Chromium driven by Selenium: Debian's browser and driver, loopback only.

Selenium is given ``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` and
``SE_OFFLINE`` is set, so its Selenium Manager never runs to fetch a
driver or a browser. Chromium resolves no name (every host but 127.0.0.1 is
NOTFOUND) and sends anything not on loopback to a proxy that is not there,
and its background services (updates, sync, safe browsing) are off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)

ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers' /dev/shm is small
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",  # discard: nothing listens; loopback bypasses it
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--lang=en-US",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def missing() -> str | None:
    """What is missing for a browser test, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"no {path}: run scripts/install-deps (Debian's chromium, chromium-driver)"
    return None


@contextmanager
def headless_chromium(log_path: Path) -> Iterator[webdriver.Chrome]:
    """A fresh browser (profile, cookies) until the block ends; chromedriver logs to log_path."""
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: the paths below already skip it
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ARGUMENTS:
        options.add_argument(argument)
    # The DevTools network events, for the HTTP status of each page (document_statuses).
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = ChromeService(executable_path=str(CHROMEDRIVER), log_output=str(log_path))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_window_size(*WINDOW)
        # The page itself 1280x900 too (the window's frame takes some of it
        # otherwise): screenshots of that size, pages laid out alike each run.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False},
        )
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def document_statuses(driver: webdriver.Chrome) -> list[int]:
    """The HTTP statuses of the pages loaded since the last call, redirects included.

    A form answered 303 and then the page it leads to (200) is ``[303, 200]``.
    """
    statuses = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if params.get("type") != "Document":
            continue
        if message["method"] == "Network.requestWillBeSent" and "redirectResponse" in params:
            statuses.append(int(params["redirectResponse"]["status"]))
        elif message["method"] == "Network.responseReceived":
            statuses.append(int(params["response"]["status"]))
    return statuses
