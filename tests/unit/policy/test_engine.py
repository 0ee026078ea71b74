"""The engine: steps in order, the first refusal decides, each step's name noted once."""

from __future__ import annotations

from osfmilter.policy import engine
from osfmilter.policy.context import Context
from osfmilter.policy.engine import step
from osfmilter.replies import InternalError
from tests.unit.policy.builders import world

ran: list[str] = []


@step("first")
def first(context: Context) -> None:
    """Passes."""
    ran.append("first")


@step("refuses")
def refuses(context: Context) -> InternalError:
    """Refuses."""
    ran.append("refuses")
    return InternalError()


@step("never", when=lambda context: False)
def never(context: Context) -> None:
    """Does not apply."""
    ran.append("never")


@step("last")
def last(context: Context) -> None:
    """Comes after a refusal."""
    ran.append("last")


def test_the_first_refusal_decides_and_nothing_after_it_runs() -> None:
    ran.clear()
    w = world()
    outcome = engine.run((first, never, refuses, last), w.context)
    assert outcome == engine.Outcome(InternalError(), ("first",), "refuses")
    assert ran == ["first", "refuses"] and w.tx.checks == ["first", "refuses"]


def test_a_step_run_again_is_noted_once_and_a_refusal_comes_last() -> None:
    w = world()
    engine.run((first, last), w.context)
    engine.run((last,), w.context)
    assert w.tx.checks == ["first", "last"]
    engine.run((first, refuses), w.context)
    engine.run((refuses,), w.context)
    assert w.tx.checks == ["first", "last", "refuses"]
    w.tx.checks[:] = ["refuses", "first"]
    engine.run((refuses,), w.context)
    assert w.tx.checks == ["first", "refuses"]


def test_a_step_summary_is_its_docstrings_first_line() -> None:
    assert first.summary == "Passes." and never.summary == "Does not apply."
