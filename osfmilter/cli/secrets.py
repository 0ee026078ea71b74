"""A password a command sets (``sasl add``, ``user passwd`` ...): made, hashed, shown once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from osfmilter import passwords
from osfmilter.cli import common
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.storage.db import Access

# What stores the hash, given (session, hash, now); it returns the stored name.
Store = Callable[[Session, str, datetime], str]


def set_password(
    args: argparse.Namespace,
    config: Config,
    access: Access,
    store: Store,
    announce: Callable[[str], str],
    *,
    locked: bool = False,
) -> int:
    """Generate a password (or read ``--password-stdin``), store its hash, say so, show it once."""
    if args.password_stdin:
        password, generated = passwords.check(common.read_secret_stdin("password")), False
    else:
        password, generated = passwords.generate(), True
    hashed = passwords.hash_password(password)  # 0.3 s of CPU: outside the transaction
    with common.session(config, access, locked=locked) as session:
        name = store(session, hashed, SystemClock().now())
    print(announce(name))
    if generated:
        # Only here, on stdout, once: never logged, never stored but as a hash.
        print(f"password: {password}")
        print("Pass it on now: only its hash is stored, it cannot be shown again.")
    return 0
