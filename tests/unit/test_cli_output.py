"""One renderer prints every report: an aligned table, CSV or JSON."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from osfmilter.cli.output import Report, Table, add_formats, fields, record, render

AT = datetime(2026, 11, 29, 12, 0, 30, 123456, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    name: str
    count: int
    at: datetime
    note: str | None


ROWS = [Row("acme", 3, AT, None), Row('big, "co"', 12, AT, "ü")]


def report() -> Report:
    records = [record(r, extra=1) for r in ROWS]
    return Report(
        document={"rows": records},
        records=records,
        fields=[*fields(Row), "extra"],
        text=["heading", Table(("name", "count"), [(r.name, r.count) for r in ROWS]), ""],
    )


def printed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser()
    add_formats(parser)
    render(parser.parse_args(argv), report())
    return capsys.readouterr().out


def test_text_is_lines_and_aligned_tables_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert printed([], capsys) == 'heading\nname       count\nacme       3\nbig, "co"  12\n\n'


def test_csv_has_a_header_and_empty_cells_for_none(capsys: pytest.CaptureFixture[str]) -> None:
    assert printed(["--csv"], capsys) == (
        "name,count,at,note,extra\n"
        "acme,3,2026-11-29T12:00:30+00:00,,1\n"
        '"big, ""co""",12,2026-11-29T12:00:30+00:00,ü,1\n'
    )


def test_json_is_the_document_with_iso_times(capsys: pytest.CaptureFixture[str]) -> None:
    assert printed(["--json"], capsys) == (
        "{\n"
        '  "rows": [\n'
        "    {\n"
        '      "name": "acme",\n'
        '      "count": 3,\n'
        '      "at": "2026-11-29T12:00:30+00:00",\n'
        '      "note": null,\n'
        '      "extra": 1\n'
        "    },\n"
        "    {\n"
        '      "name": "big, \\"co\\"",\n'
        '      "count": 12,\n'
        '      "at": "2026-11-29T12:00:30+00:00",\n'
        '      "note": "ü",\n'
        '      "extra": 1\n'
        "    }\n"
        "  ]\n"
        "}\n"
    )


def test_csv_and_json_exclude_each_other() -> None:
    parser = argparse.ArgumentParser()
    add_formats(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--csv", "--json"])
