"""Where the corpus finds the public mail samples, and what happens without them.

A plain clone has no ``shared/mail-samples`` beside it: the corpus is then
the generated messages alone, and every test still collects and runs. CI
(``CI=true``) must use the samples: there a missing samples directory is a
failing test, not a quietly smaller corpus and not a collection crash.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus.generate import (
    CI_ENV,
    SAMPLES_ENV,
    Expect,
    corpus,
    generated_entries,
    sample_entries,
    samples_problem,
)

ROOT = Path(__file__).resolve().parents[2]
HAM = b"From: Alice <alice@example.org>\r\nSubject: hi\r\n\r\nHello.\r\n"


def test_public_samples_are_there_when_ci_needs_them() -> None:
    """The gate: under CI=true the run fails here when the samples are missing."""
    problem = samples_problem()
    assert problem is None, problem


def test_the_corpus_always_holds_the_generated_messages() -> None:
    names = {entry.name for entry in corpus()}
    assert {entry.name for entry in generated_entries()} <= names
    assert len(generated_entries()) >= 150


@pytest.fixture
def samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$OSFMILTER_MAIL_SAMPLES pointed at a directory that does not exist yet."""
    directory = tmp_path / "mail-samples"
    monkeypatch.setenv(SAMPLES_ENV, str(directory))
    monkeypatch.delenv(CI_ENV, raising=False)
    return directory


def test_without_samples_outside_ci_the_corpus_is_the_generated_messages(samples: Path) -> None:
    assert sample_entries() == []
    assert samples_problem() is None


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_without_samples_in_ci_the_problem_names_the_directory(
    samples: Path, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv(CI_ENV, ci)
    problem = samples_problem()
    assert problem is not None
    assert str(samples) in problem
    assert f"${SAMPLES_ENV}" in problem


def test_an_empty_samples_directory_in_ci_is_missing_samples(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (samples / "spamassassin").mkdir(parents=True)
    monkeypatch.setenv(CI_ENV, "true")
    assert samples_problem() is not None


@pytest.mark.parametrize("ci", ["", "false", "0"])
def test_ci_that_is_not_true_does_not_require_samples(
    samples: Path, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv(CI_ENV, ci)
    assert samples_problem() is None


def test_samples_where_they_exist_are_used_in_addition(
    samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (samples / "spamassassin").mkdir(parents=True)
    (samples / "spamassassin" / "nice_hello.eml").write_bytes(HAM)
    monkeypatch.setenv(CI_ENV, "true")
    assert samples_problem() is None
    [entry] = sample_entries()
    assert (entry.name, entry.category, entry.expect) == (
        "sample_spamassassin_nice_hello_eml",
        "sample:spamassassin",
        Expect.DELIVERED,
    )
    assert entry.data() == HAM


def run_pytest(*args: str, samples: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    """pytest in a child process, with the samples at ``samples`` and CI on or off."""
    env = {**os.environ, SAMPLES_ENV: str(samples)}
    env.pop(CI_ENV, None)
    if ci:
        env[CI_ENV] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_samples_the_end_to_end_corpus_test_still_collects(tmp_path: Path) -> None:
    """It used to fail at import with FileNotFoundError, and took the whole run with it."""
    run = run_pytest(
        "--collect-only",
        "tests/integration/test_hostile_input.py",
        samples=tmp_path / "missing",
        ci=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test_corpus_message" in run.stdout
    assert "sample_" not in run.stdout


@pytest.mark.parametrize("ci", [False, True], ids=["outside-ci", "ci"])
def test_without_samples_the_run_fails_only_in_ci(tmp_path: Path, ci: bool) -> None:
    missing = tmp_path / "missing"
    run = run_pytest(
        f"{Path(__file__).relative_to(ROOT)}::test_public_samples_are_there_when_ci_needs_them",
        samples=missing,
        ci=ci,
    )
    output = run.stdout + run.stderr
    if ci:
        assert run.returncode == pytest.ExitCode.TESTS_FAILED, output
        assert f"no public mail samples at {missing}" in output
    else:
        assert run.returncode == pytest.ExitCode.OK, output
        assert "1 passed" in output
