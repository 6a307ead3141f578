"""d4c.ci: the one CI logger (annotations, groups, step summary) and where a crash log goes."""
from __future__ import annotations

from pathlib import Path

import pytest
from d4c import ci
from d4c.errors import run_guarded


def test_annotation_escapes_like_the_actions_toolkit() -> None:
    line = ci.annotation("error", "50% bad\nsecond line", file="a,b:c.yaml", line=3, col=7, title="D4C101")
    assert line == "::error file=a%2Cb%3Ac.yaml,line=3,col=7,title=D4C101::50%25 bad%0Asecond line"
    assert ci.annotation("warning", "plain") == "::warning::plain"


def test_outside_ci_nothing_is_printed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    ci.annotate("error", "x")
    with ci.step("a step"):
        pass
    assert capsys.readouterr().out == ""


def test_step_groups_and_summary_stays_under_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with ci.step("build x"):
        print("inside")
    assert capsys.readouterr().out == "::group::build x\ninside\n::endgroup::\n"
    ci.summary("# one\n")
    ci.summary("x" * ci.SUMMARY_LIMIT)  # would pass the limit: a note instead
    text = summary.read_text()
    assert text.startswith("# one\n") and "step summary is full" in text and len(text) < 1000


def test_a_crash_logs_into_the_checkout_and_is_annotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "datasets").mkdir()
    monkeypatch.setenv("D4C_REPO", str(tmp_path))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")

    def boom() -> int:
        raise RuntimeError("unexpected state")

    assert run_guarded(boom) == 3
    out, err = capfd.readouterr()
    logs = list((tmp_path / ".d4c" / "logs").glob("d4c-crash-*.log"))
    assert len(logs) == 1 and "RuntimeError: unexpected state" in logs[0].read_text()
    assert f"details in {logs[0]}" in err
    assert out.startswith("::error title=d4c crashed::unexpected RuntimeError: unexpected state")


def test_redact_is_linear_on_long_lines() -> None:
    """A megabyte of letters once took minutes (the URL scheme pattern tried every start)."""
    import time

    from d4c.redact import redact

    start = time.monotonic()
    redact("x" * (1 << 20))
    assert time.monotonic() - start < 5
    assert redact("see https://user:pw@host/x") == "see https://***@host/x"
