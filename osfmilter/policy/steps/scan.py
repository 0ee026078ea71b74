from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step


@step("scan")
def scan(context: Context) -> None:
    """The message goes to the virus and spam scanners, at once; their findings are noted.

    Scanning itself never refuses: the steps after it judge the report.
    """
    context.tx.scan = context.ports.scanning.scan(context)
