"""What ``osfmilter run`` says at start about settings that let mail through unchecked."""

from __future__ import annotations

import logging

import pytest

from osfmilter.config import config_from_dict
from osfmilter.health import BackendHealth
from osfmilter.milter.runner import build_scans, warn_about_mode


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_scanning_off_is_logged_as_fail_open(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="osfmilter"):
        build_scans(config_from_dict({}), BackendHealth())
    assert any(
        "virus scanning is off" in w and "relayed unscanned" in w and "fail-open" in w
        for w in warnings(caplog)
    )


def test_configured_clamd_draws_no_fail_open_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = config_from_dict({"clamav": {"address": "/run/clamav/clamd.ctl"}})
    with caplog.at_level(logging.INFO, logger="osfmilter"):
        build_scans(config, BackendHealth())
    assert not any("virus scanning" in w for w in warnings(caplog))


def test_inbound_mode_says_loudly_where_it_must_never_be(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="osfmilter"):
        warn_about_mode(config_from_dict({"mode": "inbound"}))
        warn_about_mode(config_from_dict({}))
    [warning] = warnings(caplog)
    assert "INBOUND MODE" in warning and "NEVER on a listener customers send through" in warning
