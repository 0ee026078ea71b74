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
