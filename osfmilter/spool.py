"""The message as received, kept in a spooled temporary file.

Small messages stay in memory; past ``MEMORY_LIMIT`` the file rolls over to
disk, so a 50 MB message never sits whole in the milter's memory.
"""

from __future__ import annotations

import tempfile
from typing import BinaryIO, cast

MEMORY_LIMIT = 256 * 1024


def header_bytes(name: str, value: str) -> bytes:
    """A header as it stood in the message; libmilter hands folds over as bare LF."""
    line = f"{name}: {value}".encode("utf-8", "surrogateescape")
    return line.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + b"\r\n"


class Spool:
    def __init__(self, directory: str | None = None) -> None:
        self._file: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by close()
            max_size=MEMORY_LIMIT, dir=directory
        )
        self.size = 0

    def header(self, name: str, value: str) -> None:
        self._write(header_bytes(name, value))

    def end_of_headers(self) -> None:
        self._write(b"\r\n")

    def body(self, chunk: bytes) -> None:
        self._write(chunk)

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def reader(self) -> BinaryIO:
        """The spooled message from its start; valid until close()."""
        self._file.seek(0)
        return cast(BinaryIO, self._file)

    def close(self) -> None:
        self._file.close()
