"""What every request reaches through the application: no module-level state."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from osfmilter.clock import Clock
from osfmilter.config import Config
from osfmilter.reputation import Rules
from osfmilter.storage.reputation import ReputationStore
from osfmilter.storage.store import SqlStore
from osfmilter.web.throttle import ApiThrottle


@dataclass(frozen=True)
class WebContext:
    """The configuration and the stores one application serves from."""

    config: Config
    store: SqlStore
    clock: Clock
    # Made from the configuration: one per application, counting in its memory.
    throttle: ApiThrottle = field(init=False)

    def __post_init__(self) -> None:
        web = self.config.web
        throttle = ApiThrottle(
            web.api_requests_per_minute, web.api_unauthenticated_per_minute, self.clock.monotonic
        )
        object.__setattr__(self, "throttle", throttle)

    @property
    def reputation(self) -> ReputationStore:
        return ReputationStore(
            self.store.engine, self.clock, Rules.from_config(self.config.reputation)
        )


def web_context(request: Request) -> WebContext:
    """FastAPI dependency: the context of the application serving the request."""
    context: WebContext = request.app.state.context
    return context
