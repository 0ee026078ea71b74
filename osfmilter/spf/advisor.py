"""``osfmilter spf check DOMAIN``: what a customer's SPF record says about the relay.

It shows the record, whether each of the relay's outbound IPs passes, how
many DNS-querying mechanisms the record costs against RFC 7208's limit of 10
(with the include tree: the "too many DNS lookups" trap of big providers'
includes), and the strict and loose records to publish.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import dns.exception
import dns.resolver

from osfmilter.spf.checker import SpfChecker

LOOKUP_LIMIT = 10
_QUERYING = ("include", "a", "mx", "ptr", "exists")
_MAX_DEPTH = 10


@dataclass
class Node:
    """One record in the include tree and the lookups it costs, itself and below."""

    domain: str
    record: str
    lookups: int = 0
    children: list[Node] = field(default_factory=list)
    problem: str = ""


@dataclass(frozen=True)
class Advice:
    domain: str
    tree: Node
    relay: tuple[tuple[str, str], ...]  # (outbound IP, result)
    strict: str
    loose: str

    @property
    def lookups(self) -> int:
        return self.tree.lookups

    @property
    def passes(self) -> bool:
        return bool(self.relay) and all(result == "pass" for _, result in self.relay)

    @property
    def unanswered(self) -> bool:
        """DNS could not answer for some relay address: whether it passes is not known."""
        return any(result == "temperror" for _, result in self.relay)


def spf_records(resolver: dns.resolver.Resolver, domain: str) -> list[str]:
    try:
        answer = resolver.resolve(domain, "TXT", raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return []
    if answer.rrset is None:
        return []
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def lookup_tree(resolver: dns.resolver.Resolver, domain: str, depth: int = 0) -> Node:
    try:
        records = spf_records(resolver, domain)
    except dns.exception.DNSException as exc:
        return Node(domain, "", problem=f"DNS error: {exc}")
    if not records:
        return Node(domain, "", problem="no SPF record")
    if len(records) > 1:
        return Node(domain, records[0], problem=f"{len(records)} SPF records (permerror)")
    node = Node(domain, records[0])
    for term in records[0].split()[1:]:
        name, target = _term(term)
        if name in _QUERYING or name == "redirect":
            node.lookups += 1
        if name in ("include", "redirect") and target:
            if "%" in target:
                node.children.append(Node(target, "", problem="macro, not followed"))
            elif depth >= _MAX_DEPTH:
                node.children.append(Node(target, "", problem="nested too deep"))
            else:
                child = lookup_tree(resolver, target, depth + 1)
                node.children.append(child)
                node.lookups += child.lookups
    return node


def _term(term: str) -> tuple[str, str]:
    """(mechanism or modifier name, its domain argument) of one SPF term."""
    bare = term.lstrip("+-~?").lower()
    if "=" in bare:
        name, _, value = bare.partition("=")
        return name, value
    name, _, value = bare.partition(":")
    return name.partition("/")[0], value.partition("/")[0]


def advise(domain: str, checker: SpfChecker, include: str) -> Advice:
    """The domain's record as DNS has it, what it gives the relay, and what to publish.

    The lookups and the relay's addresses are the checker's own, so the
    advice and the evaluation cannot describe two different set-ups.
    """
    outbound_ips = checker.outbound_ips
    tree = lookup_tree(checker.resolver, domain)
    outcome = checker.check(f"postmaster@{domain}", domain)
    if include:
        mechanisms = f"include:{include}"
    else:
        mechanisms = " ".join(f"ip{'6' if ':' in ip else '4'}:{ip}" for ip in outbound_ips)
    return Advice(
        domain=domain,
        tree=tree,
        relay=tuple((ip, result) for ip, result, _ in outcome.per_ip),
        strict=f"v=spf1 {mechanisms} -all",
        loose=f"v=spf1 {mechanisms} ~all",
    )


def render_text(advice: Advice) -> str:
    lines = [f"domain:   {advice.domain}", f"record:   {advice.tree.record or '(none)'}"]
    if advice.tree.problem:
        lines.append(f"problem:  {advice.tree.problem}")
    verdict = "OK" if advice.lookups <= LOOKUP_LIMIT else "TOO MANY: receivers will permerror"
    lines.append(f"lookups:  {advice.lookups} of {LOOKUP_LIMIT} ({verdict})")
    lines += _tree_lines(advice.tree, 1)
    lines += [f"relay {ip}: {result}" for ip, result in advice.relay]
    lines.append("publish (all mail through the relay):")
    lines.append(f"  strict: {advice.strict}")
    lines.append(f"  loose:  {advice.loose}")
    if advice.unanswered:
        lines.append(
            "=> DNS could not answer (temperror): whether the relay is authorized "
            "is not known; try again later"
        )
    elif not advice.passes:
        lines.append("=> the relay is NOT authorized: publish one of the records above")
    return "\n".join(lines)


def _tree_lines(node: Node, depth: int) -> list[str]:
    lines = []
    for child in node.children:
        note = f" [{child.problem}]" if child.problem else ""
        lines.append(f"{'  ' * depth}{child.domain}: {child.lookups} lookup(s){note}")
        lines += _tree_lines(child, depth + 1)
    return lines


def document(advice: Advice) -> dict[str, object]:
    """The advice as JSON carries it (also the SPF part of ``osfmilter domain check``)."""
    return {
        "domain": advice.domain,
        "record": advice.tree.record,
        "lookups": advice.lookups,
        "lookup_limit": LOOKUP_LIMIT,
        "tree": asdict(advice.tree),
        "relay": [{"ip": ip, "result": result} for ip, result in advice.relay],
        "passes": advice.passes,
        "strict": advice.strict,
        "loose": advice.loose,
    }


def render_json(advice: Advice) -> str:
    return json.dumps(document(advice), indent=2)
