"""One exception hierarchy, mapped to an answer at one boundary each.

The milter adapter maps every :class:`DependencyError` (and anything
unexpected) to a 4xx reply; the command line maps every :class:`OsfError` to a
one-line message, with exit status 1 for a :class:`DependencyError` (the
database, DNS) and 2 for the rest (bad input or configuration).
"""


class OsfError(Exception):
    """Base of every error osfmilter raises on purpose."""


class ConfigError(OsfError):
    """The configuration file is unreadable or invalid; the text names the key."""


class UsageError(OsfError):
    """An administrative command got input it cannot act on."""


class InvalidInput(UsageError):
    """Input that is malformed or refused as such (a network that may not be registered).

    The API answers 422 with ``public``: the text without the command line's
    hints (an option the API does not have).
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message


class ConflictError(UsageError):
    """Valid input that clashes with what is registered (an overlap, a duplicate).

    The API answers 409 with ``public``, which names no other customer.
    """

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message


class DependencyError(OsfError):
    """Something osfmilter relies on at run time failed (database, scanner, DNS)."""

    backend = "dependency"


class StorageError(DependencyError):
    """The database could not be reached or refused the statement."""

    backend = "database"


class DnsError(DependencyError):
    """DNS could not answer a lookup a command needs (a timeout, SERVFAIL)."""

    backend = "DNS"


class UnknownIdentity(OsfError):
    """A sender identity that is not, or no longer, registered."""


class TooLate(OsfError):
    """The MTA has stopped waiting for this answer; nothing was recorded or counted."""
