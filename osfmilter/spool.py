"""The message as received: in memory while small, in an unlinked temporary file after.

Past ``MEMORY_LIMIT`` the bytes move to disk, so a 50 MB message never sits
whole in the milter's memory. Scanners read it concurrently, each from its
own offset (``os.pread``), in bounded chunks.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

MEMORY_LIMIT = 256 * 1024
CHUNK = 64 * 1024


def header_bytes(name: str, value: str) -> bytes:
    """A header as it stood in the message; libmilter hands folds over as bare LF."""
    line = f"{name}: {value}".encode("utf-8", "surrogateescape")
    return line.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"


class Spool:
    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._memory: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self.size = 0

    def header(self, name: str, value: str) -> None:
        self._write(header_bytes(name, value))

    def end_of_headers(self) -> None:
        self._write(b"\r\n")

    def body(self, chunk: bytes) -> None:
        self._write(chunk)

    def _write(self, data: bytes) -> None:
        if self._memory is not None and self.size + len(data) > MEMORY_LIMIT:
            self._file = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115 - see close()
            self._file.write(self._memory)
            self._memory = None
        if self._memory is not None:
            self._memory += data
        else:
            assert self._file is not None
            self._file.write(data)
        self.size += len(data)

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The message from its start, ``size`` bytes at a time; safe from several threads."""
        if self._memory is not None:
            view = memoryview(self._memory)
            for offset in range(0, len(view), size):
                yield bytes(view[offset : offset + size])
            return
        assert self._file is not None
        self._file.flush()
        descriptor = self._file.fileno()
        offset = 0
        while offset < self.size:
            block = os.pread(descriptor, min(size, self.size - offset), offset)
            if not block:
                break
            offset += len(block)
            yield block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._memory = None
        self._file = None
