"""The engine: run a stage's steps in order; the first refusal decides.

Like Mailman's chains, it records which steps ran: each step's name goes
once, in order, into the transaction's ``checks`` (the event row and the
decision line show them), so after a refusal the last name is the step
that refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from osfmilter.policy.context import Context
from osfmilter.replies import Refusal

Check = Callable[[Context], Refusal | None]
Condition = Callable[[Context], bool]


@dataclass(frozen=True)
class Step:
    """One named rule: ``check`` refuses or passes; ``when`` says whether it applies at all."""

    name: str  # stable: the events' ``checks`` and the decision line name it
    check: Check
    when: Condition | None = None

    @property
    def summary(self) -> str:
        """The first line of the check's docstring, for docs/design.rst."""
        return (self.check.__doc__ or "").strip().splitlines()[0]


def step(name: str, when: Condition | None = None) -> Callable[[Check], Step]:
    """Make a function a step: ``@step("relay")``."""

    def make(check: Check) -> Step:
        return Step(name, check, when)

    return make


@dataclass(frozen=True)
class Outcome:
    refusal: Refusal | None
    passed: tuple[str, ...]  # the steps that ran and passed, in order
    refused_by: str | None = None  # the step that refused


def run(steps: Sequence[Step], context: Context) -> Outcome:
    checks = context.tx.checks
    passed: list[str] = []
    for each in steps:
        if each.when is not None and not each.when(context):
            continue
        if each.name not in checks:
            checks.append(each.name)
        if (refusal := each.check(context)) is not None:
            if checks[-1] != each.name:  # it passed at an earlier stage
                checks.remove(each.name)
                checks.append(each.name)
            return Outcome(refusal, tuple(passed), each.name)
        passed.append(each.name)
    return Outcome(None, tuple(passed))
