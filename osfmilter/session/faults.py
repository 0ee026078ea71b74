"""The one table from a fault to its refusal: always 451 4.3.0, never an accept or a 5xx."""

from __future__ import annotations

import logging

from osfmilter.errors import DependencyError, StorageError
from osfmilter.model import Stage
from osfmilter.replies import DatabaseError, InternalError

log = logging.getLogger("osfmilter.session")


def fault_refusal(stage: Stage, exc: Exception) -> DatabaseError | InternalError:
    """The refusal for a step that raised, logged as its kind deserves."""
    match exc:
        case StorageError():
            # The outage itself is logged once by the store's health record.
            log.debug("database error at %s: %s", stage, exc)
            return DatabaseError()
        case DependencyError():
            log.error("%s error at %s: %s", exc.backend, stage, exc)
            return InternalError()
        case _:
            log.error("internal error at %s", stage, exc_info=exc)
            return InternalError()
