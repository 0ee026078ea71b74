"""How commands print: aligned tables, and every report as a table, CSV or JSON.

A report command builds one :class:`Report` (all three forms of its rows)
and hands it to :func:`render`, which prints the form ``--csv``/``--json``
asked for; :func:`add_formats` gives a command those options.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


@dataclass(frozen=True)
class Table:
    """Rows under their headers, each column as wide as its widest cell."""

    headers: Sequence[str]
    rows: Sequence[Sequence[object]]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@dataclass(frozen=True)
class Report:
    """One report in every form a command prints it in."""

    document: object  # --json: the whole document
    records: Sequence[Mapping[str, object]]  # --csv: one line each ...
    fields: Sequence[str]  # ... under this header line, in this order
    text: Sequence[str | Table]  # otherwise: lines and tables, in order


def add_formats(parser: argparse.ArgumentParser) -> None:
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="CSV with a header line")
    output.add_argument("--json", action="store_true", help="JSON")


def render(args: argparse.Namespace, report: Report) -> None:
    """Print the report as the options of :func:`add_formats` ask."""
    if args.json:
        print(json.dumps(report.document, indent=2, ensure_ascii=False))
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(report.fields), lineterminator="\n")
        writer.writeheader()
        for row in report.records:
            writer.writerow({k: "" if row[k] is None else row[k] for k in report.fields})
    else:
        for part in report.text:
            if isinstance(part, Table):
                table(part.headers, part.rows)
            else:
                print(part)


def fields(row_type: type[DataclassInstance]) -> list[str]:
    """A row type's field names, in order: the CSV columns of its report."""
    return [f.name for f in dataclasses.fields(row_type)]


def record(row: DataclassInstance, **extra: object) -> dict[str, object]:
    """A row (and extra values) as JSON and CSV carry it: times in ISO 8601."""
    values = dataclasses.asdict(row)
    return {key: _plain(value) for key, value in {**values, **extra}.items()}


def _plain(value: object) -> object:
    return when(value) if isinstance(value, datetime) else value
