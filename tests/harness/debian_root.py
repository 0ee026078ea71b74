"""A fresh Debian 12 root for scripts/install-relay, made by debootstrap and cached.

Two tarballs in a cache outside the clone ($OSFMILTER_TEST_CACHE, else
/var/cache/osfmilter-tests), shared by every clone and CI run on the machine:

- ``bookworm-root.tar``: ``debootstrap --variant=minbase`` with systemd (what
  every Debian 12 system has, and what systemctl needs), made once;
- ``bookworm-relay-<key>.tar``: that root with the relay's Debian packages
  installed by ``install-relay --packages-only``, keyed by its package list,
  so that a warm run only does the pip install and the script's own steps.

The relay tarball is also kept unpacked (``bookworm-relay-<key>/``), never
written to: each run mounts an overlay on it with a directory of its own on
top, so a run neither unpacks 700 MB nor deletes them afterwards. It chroots
into the overlay with /proc and /dev mounted; they are always unmounted, and
the run's directory is deleted only once nothing is mounted below it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(os.environ.get("OSFMILTER_TEST_CACHE", "/var/cache/osfmilter-tests"))
MIRROR = os.environ.get("OSFMILTER_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
BASE_PACKAGES = ("systemd", "systemd-sysv")
# Inside the root, package scripts start no daemons (invoke-rc.d asks this).
POLICY_RC_D = "#!/bin/sh\nexit 101\n"
# The host's CA bundle (this machine's egress may re-sign TLS), for pip inside.
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CHROOT_CA = "/root/host-ca.pem"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _run(command: Sequence[str | Path], timeout: float = 1800) -> None:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, command))}: exit {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


def mounts_below(directory: Path) -> list[str]:
    """Mount points at or below the directory, deepest first."""
    prefix = str(directory.resolve())
    points = []
    with Path("/proc/self/mountinfo").open() as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_root(directory: Path) -> None:
    """rm -rf, but never through a mount (a bind-mounted /dev is the host's)."""
    for point in mounts_below(directory):
        subprocess.run(["umount", point], check=False)
    left = mounts_below(directory)
    if left:
        raise RuntimeError(f"still mounted, {directory} kept: {left}")
    # rm is three times faster than shutil.rmtree on a root's 40,000 files, and
    # --one-file-system would skip a mount that appeared meanwhile.
    _run(["rm", "-rf", "--one-file-system", directory])


@contextmanager
def _scratch(prefix: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=CACHE))
    directory.chmod(0o755)  # it becomes /, which every user must traverse
    try:
        yield directory
    finally:
        remove_root(directory)


@contextmanager
def _cache_lock() -> Iterator[None]:
    """One builder at a time; the others wait and then find the tarball."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _pack(root: Path, tarball: Path) -> None:
    partial = tarball.with_name(tarball.name + ".partial")
    _run(["tar", "--numeric-owner", "-C", root, "-cf", partial, "."])
    partial.rename(tarball)


def unpack(tarball: Path, root: Path) -> None:
    _run(["tar", "--numeric-owner", "-xpf", tarball, "-C", root])
    root.chmod(0o755)  # "." in the tarball is the mkdtemp of its build


def base_root() -> Path:
    """The minbase root's tarball, made by debootstrap if it is not cached yet."""
    tarball = CACHE / f"{SUITE}-root.tar"
    with _cache_lock():
        if not tarball.exists():
            with _scratch("debootstrap-") as root:
                _run(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        f"--include={','.join(BASE_PACKAGES)}",
                        SUITE,
                        root,
                        MIRROR,
                    ]
                )
                policy = root / "usr/sbin/policy-rc.d"
                policy.write_text(POLICY_RC_D)
                policy.chmod(0o755)
                _run(["chroot", root, "apt-get", "clean"])
                _pack(root, tarball)
    return tarball


def relay_root(script: Path) -> Path:
    """The root with the Debian packages install-relay installs, keyed by its list."""
    listed = subprocess.run(
        [str(script), "--print-packages"], capture_output=True, text=True, check=True
    ).stdout
    key = hashlib.sha256(f"{SUITE}\n{listed}".encode()).hexdigest()[:16]
    tarball = CACHE / f"{SUITE}-relay-{key}.tar"
    base = base_root()
    with _cache_lock():
        if not tarball.exists():
            with _scratch("relay-") as root:
                unpack(base, root)
                shutil.copy(script, root / "root/install-relay")
                with mounted(root):
                    chroot(root, "/root/install-relay", "--packages-only")
                    chroot(root, "apt-get", "clean")
                (root / "root/install-relay").unlink()
                _pack(root, tarball)
    return tarball


def relay_tree(script: Path) -> Path:
    """The relay root unpacked, once: the lower layer of every run's overlay."""
    tarball = relay_root(script)
    tree = tarball.with_suffix("")
    stamp = tarball.with_suffix(".unpacked")
    with _cache_lock():
        if not stamp.exists():
            if tree.exists():
                remove_root(tree)  # an unpacking that was interrupted
            tree.mkdir()
            unpack(tarball, tree)
            stamp.touch()
    return tree


@contextmanager
def overlay(lower: Path) -> Iterator[Path]:
    """A root of this run's own: the lower tree as it is, with what the run writes on top."""
    with _scratch("install-relay-") as scratch:
        upper, work, root = scratch / "upper", scratch / "work", scratch / "root"
        for directory in (upper, work, root):
            directory.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        _run(["mount", "-t", "overlay", "overlay", "-o", options, root])
        try:
            root.chmod(0o755)
            yield root
        finally:
            if subprocess.run(["umount", root], check=False).returncode != 0:
                subprocess.run(["umount", "-l", root], check=False)


@contextmanager
def mounted(root: Path) -> Iterator[None]:
    """/proc and /dev in the root, a shared pip cache, and the host's name server."""
    pip_cache = CACHE / "pip"
    pip_cache.mkdir(parents=True, exist_ok=True)
    (root / "root/.cache/pip").mkdir(parents=True, exist_ok=True)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    shutil.copy(HOST_CA, root / CHROOT_CA.lstrip("/"))
    mounts: list[tuple[tuple[str, ...], Path]] = [
        (("-t", "proc", "proc"), root / "proc"),
        # Not --rbind: /dev/pts and /dev/shm stay the host's alone.
        (("--bind", "/dev"), root / "dev"),
        (("--bind", str(pip_cache)), root / "root/.cache/pip"),
    ]
    done: list[Path] = []
    try:
        for options, point in mounts:
            _run(["mount", *options, point])
            done.append(point)
        yield
    finally:
        for point in reversed(done):
            if subprocess.run(["umount", point], check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], check=False)
        left = [point for point in mounts_below(root) if point != str(root.resolve())]
        if left:
            raise RuntimeError(f"could not unmount {left}")


def chroot(
    root: Path, *command: str, check: bool = True, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    """A command in the root, with a clean environment (none of the host's pip settings)."""
    environment = {
        "PATH": CHROOT_PATH,
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PIP_CERT": CHROOT_CA,
        "SSL_CERT_FILE": CHROOT_CA,
        "DEBIAN_FRONTEND": "noninteractive",
    }
    result = subprocess.run(
        ["chroot", str(root), "/usr/bin/env", "-i"]
        + [f"{key}={value}" for key, value in environment.items()]
        + list(command),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result
