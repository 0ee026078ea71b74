"""The table itself: every rule in its place, names unique and stable."""

from __future__ import annotations

from osfmilter.model import Stage
from osfmilter.policy.pipeline import PIPELINE
from osfmilter.policy.steps.volume import within_volume


def names(stage: Stage) -> list[str]:
    return [step.name for step in PIPELINE[stage]]


def test_the_order_of_the_checks() -> None:
    # docs/rules.rst, 'Order of the checks'; changing it changes answers.
    assert names(Stage.MAIL) == [
        "relay",
        "blocked",
        "sender_domain",
        "declared_size",
        "rate",
        "spf",
    ]
    assert names(Stage.RCPT) == ["recipients"]
    assert names(Stage.BODY) == ["streamed_size"]
    assert names(Stage.EOM) == [
        "streamed_size",
        "from_domain",
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


def test_the_end_of_message_ends_with_the_step_that_commits_the_accept() -> None:
    # The session answers an accept only once this step committed it.
    assert PIPELINE[Stage.EOM][-1] is within_volume
