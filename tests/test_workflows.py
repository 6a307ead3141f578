"""The GitHub Actions workflows: linters report nothing, and the security rules hold.

The rules are checked by `violations`, which is itself tested on a bad workflow so that
these tests can fail.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import missing_tool
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# Every `run:` line is a d4c command, a make target or plain wiring (docs/workflows.md).
RUN_LINE = re.compile(r"^(\.venv/bin/d4c |make |mkdir -p |git |cat report/|commit -m )")


def tool(name: str) -> str:
    """A linter from the venv (the wheels put them next to python), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        missing_tool(f"{name} is not installed (make env installs it)")
    return str(found)


def load(path: Path) -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(path.read_text())
    assert isinstance(data, dict), path
    return data


def triggers(doc: dict[str, Any]) -> set[str]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 readers may turn `on` into True
    if isinstance(on, str):
        return {on}
    return set(on or {})


def _writes(perms: Any) -> bool:
    if isinstance(perms, str):
        return perms in {"write-all", "write"}
    return any(v == "write" for v in (perms or {}).values())


def violations(doc: dict[str, Any]) -> list[str]:
    """Every breach of the workflow security rules in one parsed workflow."""
    out: list[str] = []
    on = triggers(doc)
    untrusted = bool(on & {"pull_request", "pull_request_target"})
    if "pull_request_target" in on:
        out.append("pull_request_target runs untrusted code with a privileged token")
    if "permissions" not in doc:
        out.append("workflow: no top-level permissions")
    if untrusted and _writes(doc.get("permissions")):
        out.append("workflow: write permission on a pull_request workflow")
    for name, job in (doc.get("jobs") or {}).items():
        if "permissions" not in job:
            out.append(f"{name}: no permissions")
        if untrusted:
            if _writes(job.get("permissions")):
                out.append(f"{name}: write permission in a pull_request job")
            if "environment" in job:
                out.append(f"{name}: environment (secrets) in a pull_request job")
            if "secrets." in str(job):
                out.append(f"{name}: secrets in a pull_request job")
        if "workflow_run" in on and any(str(s.get("uses", "")).startswith("actions/checkout@")
                                        for s in job.get("steps") or []):
            out.append(f"{name}: checks out code in a workflow_run workflow")
        for step in job.get("steps") or []:
            uses = step.get("uses")
            if uses and not uses.startswith("./") and not PINNED.match(uses):
                out.append(f"{name}: {uses} is not pinned to a full commit SHA")
            scripts = [step.get("run") or "", str((step.get("with") or {}).get("script") or "")]
            for script in scripts:
                for expr in EXPR.findall(script):
                    out.append(f"{name}: expression in a script: ${{{{{expr.strip()}}}}} (pass it via env:)")
    return out


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_workflow_security_rules(path: Path) -> None:
    assert violations(load(path)) == []


def test_the_rules_catch_bad_workflows() -> None:
    bad = load_text("""
on: [pull_request_target, pull_request]
jobs:
  j:
    permissions: {contents: write}
    environment: prod
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
        env: {T: "${{ secrets.TOKEN }}"}
      - uses: actions/github-script@ed597411d8f924073f98dfc5c65a23a2325f34cd
        with: {script: "core.info('${{ github.head_ref }}')"}
""")
    found = "\n".join(violations(bad))
    for expected in ("pull_request_target", "no top-level permissions", "write permission in a pull_request",
                     "environment (secrets)", "secrets in a pull_request job", "actions/checkout@v4 is not pinned",
                     "${{github.event.pull_request.title}}", "${{github.head_ref}}"):
        assert expected in found
    comment = load_text("on: {workflow_run: {}}\npermissions: {}\njobs:\n  c:\n    permissions: {}\n"
                        "    steps: [{uses: actions/checkout@" + "a" * 40 + "}]\n")
    assert violations(comment) == ["c: checks out code in a workflow_run workflow"]


def load_text(text: str) -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(text)
    assert isinstance(data, dict)
    return data


def test_the_four_workflows_and_their_triggers() -> None:
    docs = {p.stem: load(p) for p in FILES}
    assert set(docs) >= {"pr", "pr-comment", "release", "verify"}
    assert triggers(docs["pr"]) == {"pull_request"}
    assert triggers(docs["pr-comment"]) == {"workflow_run"}
    assert triggers(docs["verify"]) == {"workflow_dispatch", "schedule"}
    assert triggers(docs["release"]) == {"push", "workflow_dispatch"}  # dispatched: chunk 2, 3, ... of a chain
    assert docs["release"]["on"]["push"]["branches"] == ["main"]


def test_pr_comment_validates_the_pr_number_and_writes_only_there() -> None:
    doc = load(WORKFLOWS / "pr-comment.yml")
    (job,) = doc["jobs"].values()
    assert doc["permissions"] == {} and job["permissions"] == {"actions": "read", "pull-requests": "write"}
    script = next(s["with"]["script"] for s in job["steps"] if "github-script" in s.get("uses", ""))
    assert "^[1-9][0-9]{0,9}$" in script and "head.sha !== process.env.HEAD_SHA" in script
    assert "<!-- d4c-build-diff -->" in script and "updateComment" in script


def test_release_concurrency_oidc_and_protected_secrets() -> None:
    jobs = load(WORKFLOWS / "release.yml")["jobs"]
    rel = jobs["release"]
    assert rel["concurrency"]["group"] == "release-${{ matrix.dataset }}"
    assert jobs["catalog"]["concurrency"]["group"] == "catalog"
    assert rel["environment"] == "release" and rel["permissions"]["id-token"] == "write"
    assert any("configure-aws-credentials" in s.get("uses", "") for s in rel["steps"])
    for name, job in jobs.items():  # secrets only where the protected environment is
        if "secrets." in str(job):
            assert job.get("environment") == "release", name
        if name != "release":
            assert "id-token" not in (job.get("permissions") or {}), name
    # the full build's diff reaches the merged PR before anything is published
    assert "diff-comment" in rel["needs"] and "build" in jobs["diff-comment"]["needs"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_step_is_a_d4c_command_or_make_target(path: Path) -> None:
    for job in load(path)["jobs"].values():
        for step in job.get("steps") or []:
            lines = [ln.strip() for ln in str(step.get("run") or "").splitlines() if ln.strip()]
            for line in lines:
                assert RUN_LINE.match(line), f"{path.name}: {line!r} is logic, not wiring"


def test_actionlint_reports_nothing() -> None:
    proc = subprocess.run([tool("actionlint"), "-no-color", *map(str, FILES)], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def test_zizmor_reports_nothing_offline() -> None:
    proc = subprocess.run([tool("zizmor"), "--offline", "--no-progress", "--format", "plain", str(WORKFLOWS)],
                          cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings to report" in proc.stdout + proc.stderr
