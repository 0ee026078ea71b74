"""The documentation in docs/ says what the code does, and the code's citations of it hold.

* every page (and README.rst) is valid reStructuredText, and its links to
  other pages name files that exist;
* every :class:`~osfmilter.replies.Reason` has its section in answers.rst,
  showing the code, enhanced code, text and action the code gives, and no
  section documents a reason that does not exist;
* every reputation state has its section in states.rst;
* design.rst shows the stage table the pipeline prints;
* every citation "docs/<page>.rst, 'Section'" anywhere in the repository
  names a page and a section title that exist;
* no rules document outside the repository is cited (the SPEC the project
  started from): the rules are in docs/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from docutils import nodes
from docutils.core import publish_doctree

from osfmilter.model import ServerState
from osfmilter.policy.table import stage_table
from osfmilter.replies import (
    Blocked,
    DatabaseError,
    ForeignDomain,
    InternalError,
    MessageTooLarge,
    RateLimited,
    Reason,
    Refusal,
    RelayDenied,
    ScannerUnavailable,
    SpamScore,
    SpfFail,
    SpfPermError,
    SpfTempError,
    TooManyRecipients,
    VirusFound,
    VolumeExhausted,
    reply_for,
)
from osfmilter.verdict import Accept, action_of

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.rst"))
# Where citations may stand; what is not the project's own is left out.
SKIP_DIRS = {
    ".git",
    ".venv",
    "__pycache__",
    "osfmilter.egg-info",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
}
CITATION = re.compile(r"docs/([\w-]+\.rst),\s+'([^']+)'")


def repository_files() -> Iterator[Path]:
    for path in ROOT.rglob("*"):
        if path.is_file() and not SKIP_DIRS & set(path.relative_to(ROOT).parts):
            yield path


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # a binary file cites nothing
        return ""


#: Files that must not send readers to a rules document outside the repository.
SELF_CONTAINED = sorted(repository_files())
# Written so that this file does not match itself.
OUTSIDE = re.compile(r"SPEC\.md|SPEC[ ]§")


def _words(text: str) -> str:
    return " ".join(text.split())


@cache
def doctree(path: Path) -> nodes.document:
    """The parsed page; any docutils warning (a broken table, a bad link) fails."""
    return publish_doctree(
        path.read_text(encoding="utf-8"),
        source_path=str(path),
        settings_overrides={"halt_level": 2, "report_level": 5, "file_insertion_enabled": False},
    )


def title_of(section: nodes.section) -> str:
    title = section.next_node(nodes.title)
    assert title is not None
    return _words(title.astext())


def sections(path: Path) -> dict[str, nodes.section]:
    """Every section of the page by its title as text, whitespace collapsed."""
    return {title_of(section): section for section in doctree(path).findall(nodes.section)}


def literals(section: nodes.Element) -> set[str]:
    """The inline literals of a section (its subsections' too), whitespace collapsed."""
    return {_words(node.astext()) for node in section.findall(nodes.literal)}


@pytest.mark.parametrize("path", [ROOT / "README.rst", *PAGES], ids=lambda p: p.name)
def test_page_is_valid_and_links_exist(path: Path) -> None:
    for reference in doctree(path).findall(nodes.reference):
        target = reference.get("refuri", "")
        if target.endswith(".rst") and "://" not in target:
            assert (path.parent / target).is_file(), f"{path.name} links to missing {target}"


def test_docs_have_the_pages_the_code_cites() -> None:
    assert {p.name for p in PAGES} >= {
        "index.rst",
        "rules.rst",
        "answers.rst",
        "states.rst",
        "records.rst",
        "design.rst",
    }


# Per reason, a refusal and the values answers.rst writes as {name} in its text.
EXAMPLES: dict[Reason, tuple[Refusal, dict[str, object]]] = {
    Reason.RELAY_DENIED: (
        RelayDenied("192.0.2.1", "HINT"),
        {"client": "192.0.2.1", "register_hint": "HINT"},
    ),
    Reason.BLOCKED: (
        Blocked("192.0.2.0/24", "CONTACT"),
        {"identity": "192.0.2.0/24", "contact": "CONTACT"},
    ),
    Reason.FOREIGN_SENDER: (
        ForeignDomain("other.example", False, "HINT"),
        {"domain": "other.example", "domain_hint": "HINT"},
    ),
    Reason.FOREIGN_FROM: (
        ForeignDomain("other.example", True, "HINT"),
        {"domain": "other.example", "domain_hint": "HINT"},
    ),
    Reason.MESSAGE_SIZE: (MessageTooLarge(20, 10), {"size": 20, "limit": 10}),
    Reason.RECIPIENT_LIMIT: (
        TooManyRecipients(5, False),
        {"limit": 5, "sender_class": "an unknown"},
    ),
    Reason.RATE_LIMIT: (
        RateLimited("alice", 10, 300.0, "mail from unknown senders", 42),
        {
            "identity": "alice",
            "limit": 10,
            "window": "5 minutes",
            "sender_class": "mail from unknown senders",
            "retry_after": 42,
        },
    ),
    Reason.SPF_FAIL: (
        SpfFail("example.com", "198.51.100.7", "ADVICE", deferred=False),
        {"domain": "example.com", "ip": "198.51.100.7", "advice": "ADVICE"},
    ),
    Reason.SPF_FAIL_DEFERRED: (
        SpfFail("example.com", "198.51.100.7", "ADVICE", deferred=True),
        {"domain": "example.com", "ip": "198.51.100.7", "advice": "ADVICE"},
    ),
    Reason.SPF_TEMPERROR: (SpfTempError("example.com"), {"domain": "example.com"}),
    Reason.SPF_PERMERROR: (
        SpfPermError("example.com", "CAUSE", deferred=False),
        {"domain": "example.com", "cause": "CAUSE"},
    ),
    Reason.SPF_PERMERROR_DEFERRED: (
        SpfPermError("example.com", "CAUSE", deferred=True),
        {"domain": "example.com", "cause": "CAUSE"},
    ),
    Reason.VIRUS: (VirusFound("Eicar-Test"), {"virus": "Eicar-Test"}),
    Reason.SPAM: (SpamScore(12.5, 10.0), {"score": "12.5", "threshold": "10"}),
    Reason.SCANNER_ERROR: (ScannerUnavailable("clamav"), {"scanner": "clamav"}),
    Reason.VOLUME_LIMIT: (
        VolumeExhausted("example.com", 900, 1000),
        {"domain": "example.com", "used": 900, "allowance": 1000},
    ),
    Reason.INTERNAL_ERROR: (InternalError(), {}),
    Reason.DATABASE_ERROR: (DatabaseError(), {}),
}


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_is_documented_with_its_reply(reason: Reason) -> None:
    answers = sections(DOCS / "answers.rst")
    assert reason.value in answers, f"docs/answers.rst has no section for {reason.value!r}"
    shown = literals(answers[reason.value])
    if reason is Reason.ACCEPTED:  # the MTA writes the accept's text
        answer, action = f"{Accept.code} {Accept.enhanced_code}", "accept"
        assert answer in shown, f"accepted: docs/answers.rst does not show {answer!r}"
    else:
        refusal, values = EXAMPLES[reason]
        assert refusal.reason is reason
        reply = reply_for(refusal)
        answer, action = f"{reply.code} {reply.enhanced_code} {reply.text}", action_of(reply)
        prefix = f"{reply.code} {reply.enhanced_code} "
        documented = [text.format_map(values) for text in shown if text.startswith(prefix)]
        assert answer in documented, f"{reason.value}: docs/answers.rst does not show {answer!r}"
    assert action in shown, f"{reason.value}: docs/answers.rst does not name action {action!r}"


def test_answers_document_no_reason_that_does_not_exist() -> None:
    document = doctree(DOCS / "answers.rst")
    top = [section for section in document.findall(nodes.section) if section.parent is document]
    titles = {title_of(section) for section in top}
    assert titles - {"What every decision records"} == {r.value for r in Reason}


def test_the_design_page_shows_the_stage_table_that_runs() -> None:
    assert stage_table() in (DOCS / "design.rst").read_text(encoding="utf-8"), (
        "docs/design.rst: paste the output of 'python -m osfmilter.policy.table'"
    )


def test_every_state_is_documented() -> None:
    assert {s.value for s in ServerState} <= set(sections(DOCS / "states.rst"))


def test_every_citation_of_the_docs_names_an_existing_section() -> None:
    cited = 0
    for path in repository_files():
        for page, title in CITATION.findall(_text(path)):
            where = f"{path.relative_to(ROOT)} cites docs/{page}, {title!r}"
            assert (DOCS / page).is_file(), f"{where}: no such page"
            assert _words(title) in sections(DOCS / page), f"{where}: no such section"
            cited += 1
    assert cited, "nothing cites docs/: the pattern no longer matches the citations"


def test_no_rules_document_outside_the_repository_is_cited() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in SELF_CONTAINED
        for line in _text(path).splitlines()
        if OUTSIDE.search(line)
    ]
    assert not found, "cited, but not in the repository (the rules are in docs/):\n" + "\n".join(
        found
    )
