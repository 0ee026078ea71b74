"""What every harness service shares: ``with`` starts it and always stops it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Service(ABC):
    @abstractmethod
    def start(self) -> None:
        """Start, and return once the service answers."""

    @abstractmethod
    def stop(self) -> None:
        """Stop; safe to call when it never started or already stopped."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
