"""The stage table of docs/design.rst, printed from the pipeline.

``python -m osfmilter.policy.table`` prints it; tests/unit/test_docs.py
checks that the page shows exactly this, so the documented order cannot
drift from the one that runs.
"""

from __future__ import annotations

from osfmilter.policy.engine import Step
from osfmilter.policy.pipeline import PIPELINE


def _module_file(step: Step) -> str:
    """``steps/relay.py`` for the step defined in osfmilter.policy.steps.relay."""
    module = step.check.__module__.removeprefix("osfmilter.policy.")
    return module.replace(".", "/") + ".py"


def stage_table() -> str:
    rows = [
        (str(stage), f"``{step.name}``", _module_file(step), step.summary)
        for stage, steps in PIPELINE.items()
        for step in steps
    ]
    header = ("stage", "step", "in osfmilter/policy/", "what it checks, in the order it runs")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    rule = "  ".join("=" * width for width in widths)

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    body = [line(row).rstrip() for row in rows]
    return "\n".join([rule, line(header).rstrip(), rule, *body, rule]) + "\n"


if __name__ == "__main__":
    print(stage_table(), end="")
