"""A clamd impostor on a unix socket, for the faults a real clamd will not stage on demand.

It speaks just enough of clamd's protocol to take an ``INSTREAM``
(``zINSTREAM\\0``, then chunks each preceded by its 4-byte big-endian length,
up to a zero length) and then answers whatever the test put in
:attr:`FakeClamd.answer`: nonsense, an endless stream of bytes, or nothing at
all. With :meth:`FakeClamd.hold` it keeps the scanner waiting once the stream
is read, so a test knows the milter is inside its end-of-message callback.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from pathlib import Path

from tests.harness.service import Service

__all__ = ["ENDLESS", "FakeClamd"]

#: As :attr:`FakeClamd.answer`: this block (no NUL in it) again and again until the
#: client goes away, as a clamd gone mad would.
ENDLESS = b"\xff" * 65536
_COMMAND = b"zINSTREAM\0"


class FakeClamd(Service):
    """Serve ``zINSTREAM`` on ``socket_path``, one thread per connection.

    ``answer`` is sent once the whole stream has been read; None closes the
    connection without a word; :data:`ENDLESS` never stops.
    """

    def __init__(self, socket_path: Path, answer: bytes | None = b"stream: OK\0") -> None:
        self.socket_path = socket_path
        self.answer = answer
        self._streams = 0
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._release.set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()

    @property
    def streams(self) -> int:
        """Streams read to their end so far (answered or not)."""
        with self._cond:
            return self._streams

    def wait_streams(self, count: int, timeout: float = 30.0) -> None:
        """Block until ``count`` streams have been read in all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._streams < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"fake clamd: {self._streams} stream(s) read, expected {count} "
                        f"within {timeout}s"
                    )
                self._cond.wait(remaining)

    def hold(self) -> None:
        """From now on, answer nothing after a stream until :meth:`release`."""
        self._release.clear()

    def release(self) -> None:
        """Answer the streams being held, and the ones to come."""
        self._release.set()

    def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(16)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name="FakeClamd", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by stop()
            with self._cond:
                self._clients.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _read_stream(self, client: socket.socket) -> bool:
        reader = client.makefile("rb")
        if reader.read(len(_COMMAND)) != _COMMAND:
            return False
        while True:
            header = reader.read(4)
            if len(header) < 4:
                return False
            (length,) = struct.unpack("!I", header)
            if length == 0:
                return True
            if len(reader.read(length)) < length:
                return False

    def _serve(self, client: socket.socket) -> None:
        try:
            with client:
                client.settimeout(120)
                if not self._read_stream(client):
                    return
                with self._cond:
                    self._streams += 1
                    self._cond.notify_all()
                self._release.wait(120)
                answer = self.answer
                if answer is None:
                    return
                client.sendall(answer)
                while answer is ENDLESS:
                    client.sendall(answer)
        except OSError:
            pass  # the scanner hung up: what a client that gave up does
        finally:
            with self._cond:
                self._clients.discard(client)

    def stop(self) -> None:
        self._release.set()
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone does not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._cond:
            clients = list(self._clients)
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
