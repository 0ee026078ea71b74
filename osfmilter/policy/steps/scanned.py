from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import ScannerUnavailable


def fails_closed(context: Context, scanner: str) -> bool:
    """A scanner that could not answer delays the message unless on_error lets it pass."""
    config = context.config
    on_error = {"clamav": config.clamav.on_error, config.spam.backend: config.spam.on_error}
    return on_error.get(scanner, "tempfail") == "tempfail"


@step("scanned")
def scanned(context: Context) -> ScannerUnavailable | None:
    """Every scanner answered, or the one that did not is configured to let mail pass.

    It runs after the virus and spam steps: a definite verdict from one
    scanner stands even if another one failed.
    """
    for failure in context.tx.scan.failures:
        if fails_closed(context, failure.scanner):
            return ScannerUnavailable(failure.scanner)
    return None
