"""A real clamd for tests, with a signature database the tests generate.

No signature download: three signatures of our own are enough to prove the
path (clamd refuses to start with no database at all). clamd appends
``.UNOFFICIAL`` to unsigned signatures' names, so compare with ``in``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from tests.harness.daemon import wait_until_ready
from tests.harness.service import Service

# The EICAR test file, kept as hex so no scanner flags this source file.
EICAR = bytes.fromhex(
    "58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152"
    "442d414e544956495255532d544553542d46494c452124482b482a"
)
MARKER = b"OSFMILTER-TEST-VIRUS-7f3a9c"


def signature_files() -> dict[str, str]:
    """Body signatures (anywhere, in any MIME part once decoded) and a whole-file hash."""
    import hashlib

    return {
        "osf-test.ndb": f"Osf.Test.EICAR-NDB:0:*:{EICAR.hex()}\n",
        "osf-test.ldb": f"Osf.Test.Marker-LDB;Engine:51-255,Target:0;0;{MARKER.hex()}\n",
        "osf-test.hdb": f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Osf.Test.EICAR-HDB\n",  # noqa: S324
    }


class ClamdProcess(Service):
    def __init__(self, workdir: Path, stream_max_length: str = "70M") -> None:
        self.workdir = workdir
        self.stream_max_length = stream_max_length
        self.socket_path = workdir / "clamd.sock"
        self.log_path = workdir / "clamd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        database = self.workdir / "db"
        database.mkdir(parents=True, exist_ok=True)
        for name, text in signature_files().items():
            (database / name).write_text(text)
        config = self.workdir / "clamd.conf"
        config.write_text(
            "Foreground yes\n"
            f"LogFile {self.log_path}\n"
            f"DatabaseDirectory {database}\n"
            f"LocalSocket {self.socket_path}\n"
            "FixStaleSocket yes\n"
            f"StreamMaxLength {self.stream_max_length}\n"
            f"MaxScanSize {self.stream_max_length}\n"
            f"MaxFileSize {self.stream_max_length}\n"
            "MaxThreads 4\nSelfCheck 0\nScanMail yes\nScanArchive yes\nBytecode no\n"
        )
        return config

    def start(self, timeout: float = 60.0) -> None:
        config = self._write_config()
        with (self.workdir / "clamd.out").open("ab") as out:
            self.process = subprocess.Popen(
                ["clamd", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        wait_until_ready(self.process, self.ping, "clamd", timeout, self.log, interval=0.05)

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(str(self.socket_path))
                sock.sendall(b"zPING\0")
                return sock.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: clamd accepts connections (the kernel does) but never answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        out = self.workdir / "clamd.out"
        texts = [p.read_text(errors="replace") for p in (self.log_path, out) if p.exists()]
        return "\n".join(texts)[-3000:]
