"""Every portal page: a label for every field, unique ids, one h1, a skip link, the nav marked."""

from __future__ import annotations

from html.parser import HTMLParser

from fastapi.testclient import TestClient

from tests.web.conftest import OPERATOR_USER, Portal, post_form

PAGES = ("/", "/servers", "/sasl", "/tokens")
VOID = frozenset({"meta", "link", "input", "br", "img", "hr"})


class Outline(HTMLParser):
    """What the checks need from a page: ids, labels, fields, headings, the open tags."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.label_for: set[str] = set()
        self.fields: list[tuple[str, str]] = []  # (tag, id)
        self.h1 = 0
        self.current_nav = 0
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "label":
            self.label_for.add(values.get("for", ""))
        if tag in ("input", "select", "textarea") and values.get("type") not in (
            "hidden",
            "submit",
        ):
            self.fields.append((tag, values.get("id", "")))
        if tag == "h1":
            self.h1 += 1
        if tag == "a" and values.get("aria-current") == "page":
            self.current_nav += 1
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()


def check(html: str, logged_in: bool) -> None:
    outline = Outline()
    outline.feed(html)
    assert not outline.open, f"unclosed: {outline.open}"
    assert len(outline.ids) == len(set(outline.ids)), f"duplicate ids: {outline.ids}"
    for tag, field_id in outline.fields:
        assert field_id and field_id in outline.label_for, f"<{tag} id={field_id!r}> has no label"
    assert outline.h1 == 1
    assert "main" in outline.ids and 'href="#main"' in html
    if logged_in:
        assert outline.current_nav == 1


def test_every_page_is_labelled_and_well_formed(portal: Portal) -> None:
    check(portal.client().get("/login").text, logged_in=False)
    check(portal.client().get("/no-such-page").text, logged_in=False)
    portal.add_user(OPERATOR_USER, None)
    # An operator's pages have the most on them: the customer column and field.
    operator: TestClient = portal.login(OPERATOR_USER)
    post_form(operator, "/servers", "/servers", network="81.2.69.7", customer="acme")
    post_form(operator, "/tokens", "/tokens", name="ci")
    made = post_form(operator, "/sasl", "/sasl", login="shop@acme.example", customer="acme")
    check(made.text, logged_in=True)
    for page in PAGES:
        response = operator.get(page)
        assert response.status_code == 200, page
        check(response.text, logged_in=True)
    invalid = post_form(operator, "/servers", "/servers", network="10.0.0.1", customer="acme")
    assert invalid.status_code == 422
    check(invalid.text, logged_in=True)
