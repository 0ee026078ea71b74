from __future__ import annotations

from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import VirusFound


@step("virus")
def no_virus(context: Context) -> VirusFound | None:
    """ClamAV found no virus."""
    if virus := context.tx.scan.virus:
        return VirusFound(virus)
    return None
