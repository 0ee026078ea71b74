"""``osfmilter dkim``: the signing keys of verified domains and the records to publish.

A key is a row (its public half, its state) and a private key file under
``[dkim] key_dir``. A command checks the domain and the selector in its
transaction, then writes the file, and removes it again if the commit
fails: no file is left without its row, and no row without its file.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from osfmilter.cli import common
from osfmilter.cli.common import Commands, command, group
from osfmilter.cli.output import when
from osfmilter.clock import SystemClock
from osfmilter.config import Config
from osfmilter.dkim.keys import GeneratedKey, KeyFiles, generate, record_text
from osfmilter.dkim.published import check_published, record_name
from osfmilter.dkim.signer import ALGORITHMS, Algorithm
from osfmilter.errors import UsageError
from osfmilter.storage import dkim as stored
from osfmilter.storage.db import Access
from osfmilter.storage.domains import get_domain
from osfmilter.storage.schema import DkimKey

# A TXT record's strings hold at most 255 characters each (RFC 1035).
TXT_STRING = 255


def cmd_keygen(args: argparse.Namespace, config: Config) -> int:
    files = KeyFiles(config.dkim_key_path)
    generated = generate(args.algorithm)
    now = SystemClock().now()
    with _removed_on_failure(files) as written, common.session(config, Access.EXISTING) as session:
        row = stored.create_key(
            session, args.domain, args.selector, args.algorithm, generated.public_key, now
        )
        domain, selector = row.domain.domain, row.selector
        path = written.write(domain, selector, generated)
    print(f"DKIM key {selector} ({args.algorithm}) of {domain} is active; private key {path}")
    print("publish this TXT record:")
    _print_record(domain, selector, args.algorithm, generated.public_key)
    _print_copy_hint(files)
    return 0


def cmd_rotate(args: argparse.Namespace, config: Config) -> int:
    files = KeyFiles(config.dkim_key_path)
    algorithm: Algorithm = args.algorithm or _current_algorithm(config, args.domain)
    generated = generate(algorithm)
    now = SystemClock().now()
    grace = timedelta(days=config.dkim.rotation_grace_days)
    with _removed_on_failure(files) as written, common.session(config, Access.EXISTING) as session:
        rotation = stored.rotate(
            session, args.domain, args.selector, algorithm, generated.public_key, now, grace
        )
        domain = rotation.new.domain.domain
        new, old = _Key(rotation.new), _Key(rotation.retired)
        removed = [k.selector for k in rotation.removed]
        written.write(domain, new.selector, generated)
    for selector in removed:
        files.remove(domain, selector)
        print(f"removed DKIM key {selector} of {domain}: its grace period was over")
    print(f"DKIM key {new.selector} ({new.algorithm}) of {domain} is active; publish:")
    _print_record(domain, new.selector, new.algorithm, new.public_key)
    print(
        f"DKIM key {old.selector} ({old.algorithm}) is retiring; keep it published "
        f"until {when(old.retire_after or now)}:"
    )
    _print_record(domain, old.selector, old.algorithm, old.public_key)
    _print_copy_hint(files)
    return 0


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    now = SystemClock().now()
    with common.session(config, Access.READ_ONLY) as session:
        domain = get_domain(session, args.domain).domain
        published = [_Key(k) for k in stored.published_keys(session, domain, now)]
    if args.json:
        print(json.dumps(_document(domain, published), indent=2))
        return 0
    if not published:
        print(f"{domain} has no DKIM key; 'osfmilter dkim keygen {domain}' makes one")
    for key in published:
        until = f" until {when(key.retire_after)}" if key.retire_after else ""
        print(f"{key.selector}  {key.algorithm}  {key.state}{until}")
        print(f"  name:   {record_name(domain, key.selector)}")
        print(f"  record: {record_text(key.algorithm, key.public_key)}")
    return 0


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    from osfmilter.spf.checker import resolver_for

    now = SystemClock().now()
    with common.session(config, Access.READ_ONLY) as session:
        domain = get_domain(session, args.domain).domain
        published = [_Key(k) for k in stored.published_keys(session, domain, now)]
    if not published:
        raise UsageError(f"{domain} has no DKIM key to check; 'osfmilter dkim keygen' makes one")
    resolver = resolver_for(config.spf.nameservers, config.spf.timeout)
    results = [
        (key, check_published(domain, key.selector, key.algorithm, key.public_key, resolver))
        for key in published
    ]
    for key, result in results:
        print(f"{key.selector} ({key.state}): {result.state}: {result.summary}")
    return 0 if all(result.matches for _, result in results) else 1


def _current_algorithm(config: Config, domain: str) -> Algorithm:
    """The active key's algorithm: what a rotation keeps unless told otherwise."""
    with common.session(config, Access.READ_ONLY) as session:
        current = stored.active_key(session, domain)
        return _algorithm(current.algorithm) if current is not None else "rsa-sha256"


class _Key:
    """A key's columns, read inside the transaction for printing after it."""

    def __init__(self, row: DkimKey) -> None:
        self.selector = row.selector
        self.algorithm: Algorithm = _algorithm(row.algorithm)
        self.state = row.state
        self.public_key = row.public_key
        self.created_at = row.created_at
        self.retire_after = row.retire_after


def _algorithm(text: str) -> Algorithm:
    for algorithm in ALGORITHMS:
        if text == algorithm:
            return algorithm
    raise UsageError(f"the database holds an unknown DKIM algorithm {text!r}")


def _document(domain: str, published: list[_Key]) -> dict[str, object]:
    """``--json``: the active key's selector, name and record on top; every published key."""
    entries = [
        {
            "selector": k.selector,
            "algorithm": k.algorithm,
            "state": k.state,
            "name": record_name(domain, k.selector),
            "record": record_text(k.algorithm, k.public_key),
            "created_at": when(k.created_at),
            "retire_after": when(k.retire_after) if k.retire_after else None,
        }
        for k in published
    ]
    active = next((e for e in entries if e["state"] == stored.ACTIVE), None)
    return {
        "domain": domain,
        "selector": active["selector"] if active else None,
        "name": active["name"] if active else None,
        "record": active["record"] if active else None,
        "keys": entries,
    }


class _Written:
    """The key files a command wrote, to remove again if its transaction fails."""

    def __init__(self, files: KeyFiles) -> None:
        self.files = files
        self.names: list[tuple[str, str]] = []

    def write(self, domain: str, selector: str, key: GeneratedKey) -> Path:
        path = self.files.write(domain, selector, key.private_pem)
        self.names.append((domain, selector))
        return path


@contextmanager
def _removed_on_failure(files: KeyFiles) -> Iterator[_Written]:
    """Around the transaction: a file written in it goes again if it does not commit."""
    written = _Written(files)
    try:
        yield written
    except BaseException:
        for domain, selector in written.names:
            files.remove(domain, selector)
        raise


def _print_record(domain: str, selector: str, algorithm: Algorithm, public_key: str) -> None:
    name = record_name(domain, selector)
    record = record_text(algorithm, public_key)
    strings = " ".join(f'"{record[i : i + TXT_STRING]}"' for i in range(0, len(record), TXT_STRING))
    print(f"  name:   {name}")
    print(f"  record: {record}")
    print(f"  zone:   {name}. IN TXT {strings}")


def _print_copy_hint(files: KeyFiles) -> None:
    print(
        f"copy {files.directory} to every relay node, readable by the milter's user only "
        "(docs/dkim.rst)"
    )


def _algorithm_argument(text: str) -> Algorithm:
    try:
        return _algorithm(text)
    except UsageError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not one of {', '.join(ALGORITHMS)}"
        ) from None


def _key_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("domain")
    parser.add_argument(
        "--selector", help="the selector (default: osf and the month, e.g. osf202612)"
    )
    parser.add_argument(
        "--algorithm",
        type=_algorithm_argument,
        metavar="|".join(ALGORITHMS),
        help=f"the key's algorithm (default: {default}; RSA keys have 2048 bits)",
    )


def register(commands: Commands) -> None:
    dkim = group(commands, "dkim", "DKIM signing keys of verified domains")
    p = command(dkim, "keygen", cmd_keygen, "make a verified domain's first DKIM key")
    _key_arguments(p, "rsa-sha256")
    p.set_defaults(algorithm="rsa-sha256")
    p = command(dkim, "show", cmd_show, "show a domain's published DKIM keys and their records")
    p.add_argument("domain")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = command(dkim, "check", cmd_check, "check that DNS publishes each of a domain's keys")
    p.add_argument("domain")
    p = command(
        dkim, "rotate", cmd_rotate, "make a new active key; the old one retires after a grace"
    )
    _key_arguments(p, "the active key's")
