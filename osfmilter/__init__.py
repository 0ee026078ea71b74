"""osfmilter: a milter for a hosted outbound mail relay."""

__version__ = "0.1.0"
