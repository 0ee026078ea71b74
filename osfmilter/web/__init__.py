"""``osfmilter web``: the JSON API (docs/api.rst) and the portal (docs/portal.rst), on one database.

A change made here reaches the milter at its next message, through the
registry version the tables' triggers raise. Modules: :mod:`.app` builds the
application from the configuration, :mod:`.auth` turns a bearer token into
a caller, :mod:`.errors` answers every failure as ``{"error": "..."}``,
:mod:`.api` holds the endpoints, :mod:`.portal` the portal's pages,
:mod:`.operations` every change either makes, and
:mod:`.server` runs it under uvicorn.
"""

from osfmilter.web.app import create_app

__all__ = ["create_app"]
