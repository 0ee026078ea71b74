"""What every request reaches through the application: no module-level state."""

from __future__ import annotations

from dataclasses import dataclass, field

from anyio import CapacityLimiter
from fastapi import Request

from osfmilter.clock import Clock
from osfmilter.config import Config
from osfmilter.reputation import Rules
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.store import SqlStore


@dataclass(frozen=True)
class WebContext:
    """The configuration and the stores one application serves from."""

    config: Config
    store: SqlStore
    clock: Clock
    # The threads portal password checks run on ([web] password_checks).
    password_checks: CapacityLimiter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limiter = CapacityLimiter(self.config.web.password_checks)
        object.__setattr__(self, "password_checks", limiter)

    @property
    def reputation(self) -> ReputationStore:
        return ReputationStore(
            self.store.engine, self.clock, Rules.from_config(self.config.reputation)
        )


def web_context(request: Request) -> WebContext:
    """FastAPI dependency: the context of the application serving the request."""
    context: WebContext = request.app.state.context
    return context
