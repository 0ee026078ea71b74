"""The table itself: every rule in its place, names unique and stable."""

from __future__ import annotations

from osfmilter.model import Stage
from osfmilter.policy.pipeline import PIPELINE


def names(stage: Stage) -> list[str]:
    return [step.name for step in PIPELINE[stage]]


def test_the_order_of_the_checks() -> None:
    # docs/rules.rst, 'Order of the checks'; changing it changes answers.
    assert names(Stage.MAIL) == ["relay", "blocked", "declared_size", "rate", "spf"]
    assert names(Stage.RCPT) == ["recipients"]
    assert names(Stage.BODY) == ["streamed_size"]
    assert names(Stage.EOM) == [
        "streamed_size",
        "header_recipients",
        "unknown_sender_window",
        "scan",
        "virus",
        "spam",
        "scanned",
        "rate_renewal",
        "content_timeout",
        "volume",
    ]


def test_a_name_means_one_rule() -> None:
    steps = {step.name: step for stage in PIPELINE.values() for step in stage}
    for stage in PIPELINE.values():
        for step in stage:
            assert steps[step.name] is step
            assert step.summary, f"{step.name} has no docstring"
