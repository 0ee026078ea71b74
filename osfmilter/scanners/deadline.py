"""One time budget for a scanner's whole exchange, spent across its socket operations."""

from __future__ import annotations

import socket
import time

# A spent budget still gives each operation this long, so it raises TimeoutError;
# settimeout(0) would make the socket non-blocking, and a negative one is a ValueError.
_FLOOR = 0.01


class Deadline:
    """A scanner's timeout as a point in time; each socket operation gets what is left.

    A socket timeout bounds one send or receive, not an exchange of many: a
    slow peer that trickles a reply would otherwise hold the scan for the
    timeout once per block.
    """

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(_FLOOR, self._end - time.monotonic())

    def arm(self, sock: socket.socket) -> None:
        """Give the socket's next operation the rest of the budget."""
        sock.settimeout(self.remaining())
