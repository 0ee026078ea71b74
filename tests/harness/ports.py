"""Free loopback TCP ports for test servers.

The kernel picks the port (bind to port 0), so parallel test runs do not
collide on hard-coded numbers. There is an unavoidable window between
closing the probe socket and the real server binding the port; callers that
bind later should be ready to retry.
"""

from __future__ import annotations

import socket

__all__ = ["free_dual_stack_port", "free_port", "ipv6_loopback_available"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is currently free on ``host``."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ipv6_loopback_available() -> bool:
    """Tell whether ``::1`` can be bound (IPv6 enabled on loopback)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_dual_stack_port(attempts: int = 50) -> int:
    """Return a port that is free on both ``127.0.0.1`` and ``::1``.

    A server listening on both loopback addresses is easier to address in
    tests when it uses one port number for both families.
    """
    for _ in range(attempts):
        port = free_port("127.0.0.1")
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
                sock.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no port free on both 127.0.0.1 and ::1 after {attempts} tries")
