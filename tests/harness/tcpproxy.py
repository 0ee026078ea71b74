"""A TCP forwarder that can be "unplugged" to simulate a lost backend.

Put it between the milter and PostgreSQL: :meth:`TcpProxy.pause` cuts every
open connection and makes new ones fail at once, like a database server
that went away; :meth:`TcpProxy.resume` brings it back on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.harness.ports import free_port
from tests.harness.service import Service

__all__ = ["TcpProxy"]

_BUFSIZE = 65536


def _abort(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) so the peer notices immediately."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class _Pipe:
    """One proxied connection: a client socket and its upstream socket."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self._proxy = proxy
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._closed = False
        self._eofs = 0
        self._threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                chunk = src.recv(_BUFSIZE)
                if not chunk:
                    break
                dst.sendall(chunk)
        except OSError:
            self.close()
            return
        # Orderly EOF: pass the half-close on; the other direction may
        # still be busy. The second direction to finish closes both.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return
        with self._lock:
            self._eofs += 1
            both_done = self._eofs == 2
        if both_done:
            self.close()

    def close(self, abort: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sock in (self.client, self.upstream):
            if abort:
                _abort(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._proxy._forget(self)

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


class TcpProxy(Service):
    """Threaded TCP forwarder from ``127.0.0.1:<port>`` to a target.

    While paused, existing connections are reset and new ones are accepted
    and reset at once (the listening port stays ours, so resume() cannot
    lose it to another process).
    """

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._pipes: set[_Pipe] = set()
        self._lock = threading.Lock()
        self._paused = threading.Event()
        self._stopping = threading.Event()
        self._port: int | None = None
        #: Connections accepted (and forwarded or refused) so far.
        self.connections = 0

    @property
    def port(self) -> int:
        """The local port clients should connect to (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("proxy not started")
        return self._port

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused.is_set()

    def start(self) -> None:
        """Listen and begin forwarding."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self._port or free_port(self.listen_host)))
        listener.listen(128)
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._stopping.clear()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"TcpProxy:{self._port}", daemon=True
        )
        self._accept_thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by stop()
            self.connections += 1
            if self._paused.is_set() or self._stopping.is_set():
                _abort(client)
                continue
            try:
                upstream = socket.create_connection((self.target_host, self.target_port), 10.0)
                upstream.settimeout(None)
            except OSError:
                _abort(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pipe = _Pipe(self, client, upstream)
            with self._lock:
                self._pipes.add(pipe)
            pipe.start()

    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)

    @property
    def active_connections(self) -> int:
        """Number of currently forwarded connections."""
        with self._lock:
            return len(self._pipes)

    def _cut_all(self) -> None:
        with self._lock:
            pipes = list(self._pipes)
        for pipe in pipes:
            pipe.close(abort=True)
        for pipe in pipes:
            pipe.join(5.0)

    def pause(self) -> None:
        """Reset all connections and refuse new ones until :meth:`resume`."""
        self._paused.set()
        self._cut_all()

    def resume(self) -> None:
        """Forward new connections again."""
        self._paused.clear()

    def stop(self) -> None:
        """Close the listener and every connection."""
        self._stopping.set()
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        if self._accept_thread is not None:
            self._accept_thread.join(5.0)
            self._accept_thread = None
        self._cut_all()
