"""End to end, as the PR workflow runs it: a released dataset in a real git repository, a PR
that changes its transform, then `validate`, `plan`, `build --check` and `diff`.

Removing a column under a patch bump fails the SemVer check (diff exits 1); the same
change under a major bump passes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ID = "ca_d4c_provinces-territories"
GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
ENV = {"GIT_AUTHOR_DATE": "2026-01-02T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-02T00:00:00Z"}


def d4c(repo: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "D4C_REPO": str(repo)}
    proc = subprocess.run([sys.executable, "-m", "d4c", *args], cwd=repo, env=env, text=True,
                          capture_output=True, check=False, timeout=300)
    if log is not None:  # what CI tees from `d4c build --check`
        log.write_text(proc.stdout + proc.stderr)
    return proc


def commit(repo: Path, msg: str) -> str:
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", msg], cwd=repo, check=True, env={**os.environ, **ENV})
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)
    return out.stdout.strip()


def set_version(repo: Path, version: str) -> None:
    recipe = repo / "datasets" / ID / "recipe.yaml"
    text = recipe.read_text()
    old = next(line for line in text.splitlines() if line.startswith("version: "))
    recipe.write_text(text.replace(old, f"version: {version}", 1))


@pytest.fixture
def released(repo_copy: Path) -> tuple[Path, str]:
    """The project copy with ID built and released to the default local target, committed."""
    for step in (("build", ID), ("release", ID)):
        proc = d4c(repo_copy, *step)
        assert proc.returncode == 0, proc.stderr
    assert (repo_copy / "releases" / ID / "1.0.0.json").is_file()
    return repo_copy, commit(repo_copy, "release 1.0.0")


def test_pr_workflow_commands_semver_fail_then_pass(released: tuple[Path, str], tmp_path: Path) -> None:
    repo, base = released
    transform = repo / "datasets" / ID / "transform.py"
    src = transform.read_text()
    assert '"capital_lat", "capital_lon"]' in src
    transform.write_text(src.replace('"capital_lat", "capital_lon"]', '"capital_lat", "capital_lon", "kind"]'))
    set_version(repo, "1.0.1")
    commit(repo, "PR: drop the kind column")

    val = d4c(repo, "validate", "--format", "github")
    assert val.returncode == 0, val.stdout + val.stderr
    plan = d4c(repo, "plan", "--base", base)
    assert plan.returncode == 0 and '"datasets":["' + ID + '"]' in plan.stdout

    log = tmp_path / "check.log"
    build = d4c(repo, "build", ID, "--check", "--out", str(tmp_path / "pr"), log=log)
    assert build.returncode == 0, build.stderr
    result = json.loads((tmp_path / "pr.check.json").read_text())
    assert result["reproducible"] is True and all(a["identical"] for a in result["artifacts"])
    assert [v["tz"] for v in result["variations"]] == ["UTC", "Pacific/Chatham"]
    diff = d4c(repo, "diff", ID, "--build", str(tmp_path / "pr"), "--check-result", str(tmp_path / "pr.check.json"),
               "--save", str(tmp_path / "results" / ID))
    assert diff.returncode == 1, diff.stderr
    md = diff.stdout
    for expected in (
        f"## Build diff: `{ID}` 1.0.0 -> 1.0.1",
        ("**SemVer: FAIL**: the data shows a major change but the version bump 1.0.0 -> 1.0.1 is patch: "
        "set version to 2.0.0"),
        "| `capitals` | **changed** | **changed** |",
        "- columns removed: `kind`",
        "- rows by key `pruid`: 0 added, 0 removed, 0 changed",
        "- major: `capitals`: column `kind` removed",
        "- bit-for-bit identical",
        f".venv/bin/d4c build {ID} --runner local --check",
    ):
        assert expected in md, f"missing {expected!r} in:\n{md}"

    # the report job: one bounded comment for every dataset, with the PR number
    comment = d4c(repo, "diff", "--combine", str(tmp_path / "results"), "--save", str(tmp_path / "pr-report"),
                  "--pr-number", "7")
    assert comment.returncode == 0, comment.stderr
    assert comment.stdout.startswith("<!-- d4c-build-diff -->\n### d4c build diff")
    assert f"SemVer failures: `{ID}`" in comment.stdout and "- columns removed: `kind`" in comment.stdout
    assert (tmp_path / "pr-report" / "pr-number.txt").read_text() == "7\n"

    # without the published files the diff still judges from the record's manifest, and says so
    publish = repo / ".d4c" / "publish"
    publish.rename(tmp_path / "publish-away")
    blind = d4c(repo, "diff", ID, "--build", str(tmp_path / "pr"))
    assert blind.returncode == 1 and "compared the manifests only" in blind.stdout
    (tmp_path / "publish-away").rename(publish)

    set_version(repo, "2.0.0")
    commit(repo, "PR: major bump")
    build2 = d4c(repo, "build", ID, "--check", "--out", str(tmp_path / "pr2"), log=log)
    assert build2.returncode == 0, build2.stderr
    ok = d4c(repo, "diff", ID, "--build", str(tmp_path / "pr2"), "--check-result", str(tmp_path / "pr2.check.json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "**SemVer: pass** (major bump covers the major change)" in ok.stdout
    assert f"## Build diff: `{ID}` 1.0.0 -> 2.0.0" in ok.stdout
