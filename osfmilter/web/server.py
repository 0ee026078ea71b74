"""``osfmilter web`` under uvicorn, logging through osfmilter.logsetup.

uvicorn's access lines name the method, path, query and status: never a
header (so never the Authorization one) nor a body.
"""

from __future__ import annotations

import logging

import uvicorn

from osfmilter.addresses import parse_host_port
from osfmilter.config import Config
from osfmilter.web.app import create_app

log = logging.getLogger("osfmilter.web")


def serve(config: Config) -> None:
    """Serve the API on ``[web] listen`` until interrupted."""
    host, port = parse_host_port(config.web.listen)
    app = create_app(config)
    log.info("serving the portal on http://%s/ and the API under /api/v1", config.web.listen)
    uvicorn.run(
        app,
        host=host,
        port=port,
        # None: no logging configuration of uvicorn's own; its loggers
        # propagate to the handler setup_logging installed.
        log_config=None,
        access_log=True,
        server_header=False,
        proxy_headers=False,
    )
