"""Where log records go (stderr or syslog), each on one printable line."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from osfmilter.addresses import parse_host_port
from osfmilter.config import Config
from osfmilter.decisionlog import escape


class OneLineFormatter(logging.Formatter):
    """Every record on one line, tracebacks included, so a log line is a record.

    Any line may carry text from the network (a customer's SPF record, a HELO
    name): every control character is escaped, as in decision lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


def setup_logging(config: Config) -> None:
    handler: logging.Handler
    if config.log.target == "syslog":
        address = config.log.syslog_address
        handler = logging.handlers.SysLogHandler(
            address=address if address.startswith("/") else parse_host_port(address),
            facility=logging.handlers.SysLogHandler.facility_names[config.log.syslog_facility],
        )
        handler.setFormatter(OneLineFormatter("osfmilter[%(process)d]: %(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log.level.upper(), handlers=[handler])
    if config.log.level != "debug":
        # Alembic narrates every migration context at INFO.
        logging.getLogger("alembic").setLevel(logging.WARNING)
