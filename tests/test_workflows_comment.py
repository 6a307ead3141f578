"""The sticky-comment script of pr-comment.yml, run by node against a recording GitHub client.

It must refuse anything but an integer PR number, refuse a PR whose head is not the commit
that ran, update the one comment carrying the marker, and keep the body under the limit.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

WORKFLOW = Path(__file__).resolve().parent.parent / ".github" / "workflows" / "pr-comment.yml"
HEAD = "c" * 40
MARKER = "<!-- d4c-build-diff -->"

# github-script runs the script as the body of an async function with these names in scope.
HARNESS = """
const fs = require('fs');
const [script, state] = [fs.readFileSync(process.argv[2], 'utf8'), JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))];
const calls = [];
const github = {
  rest: {
    pulls: { get: async (a) => { calls.push(['pulls.get', a]); return { data: { head: { sha: state.head } } }; } },
    repos: { listPullRequestsAssociatedWithCommit: async (a) => { calls.push(['prs', a]); return { data: state.prs || [] }; } },
    issues: {
      listComments: 'listComments',
      updateComment: async (a) => { calls.push(['update', a]); },
      createComment: async (a) => { calls.push(['create', a]); },
    },
  },
  paginate: async (fn, a) => { calls.push(['paginate', a]); return state.comments; },
};
const core = { setFailed: (m) => calls.push(['failed', m]) };
const context = { repo: { owner: 'o', repo: 'r' }, sha: state.head };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => console.log(JSON.stringify(calls)), (e) => { console.error(e); process.exit(2); });
"""


def node(require_tool: Callable[..., str]) -> str:
    return require_tool("node", "nodejs")


def script_of(workflow: Path, job: str) -> str:
    steps = YAML(typ="safe", pure=True).load(workflow.read_text())["jobs"][job]["steps"]
    return str(next(s["with"]["script"] for s in steps if "github-script" in s.get("uses", "")))


def run_node(node: str, tmp_path: Path, script: str, state: dict[str, Any], env: dict[str, str]) -> list[Any]:
    (tmp_path / "script.js").write_text(script)
    (tmp_path / "harness.js").write_text(HARNESS)
    (tmp_path / "state.json").write_text(json.dumps(state))
    proc = subprocess.run([node, str(tmp_path / "harness.js"), str(tmp_path / "script.js"),
                           str(tmp_path / "state.json")], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls: list[Any] = json.loads(proc.stdout)
    return calls


@pytest.fixture
def run_script(tmp_path: Path, require_tool: Callable[..., str]) -> Callable[..., list[Any]]:
    exe = node(require_tool)
    script = script_of(WORKFLOW, "comment")

    def run(number: str, body: str = f"{MARKER}\n### d4c build diff\n", head: str = HEAD,
            comments: list[dict[str, Any]] | None = None) -> list[Any]:
        report = tmp_path / "report"
        report.mkdir(exist_ok=True)
        (report / "pr-number.txt").write_text(number)
        (report / "comment.md").write_text(body)
        return run_node(exe, tmp_path, script, {"head": head, "comments": comments or []},
                        {"REPORT_DIR": str(report), "HEAD_SHA": HEAD})

    return run


def test_creates_one_comment_for_a_valid_pr(run_script: Callable[..., list[Any]]) -> None:
    calls = run_script("42\n")
    assert calls[0] == ["pulls.get", {"owner": "o", "repo": "r", "pull_number": 42}]
    assert calls[-1][0] == "create" and calls[-1][1]["issue_number"] == 42
    assert calls[-1][1]["body"].startswith(MARKER)


def test_updates_the_marked_comment(run_script: Callable[..., list[Any]]) -> None:
    comments = [{"id": 7, "user": {"type": "User"}, "body": f"{MARKER} quoted by a person"},
                {"id": 9, "user": {"type": "Bot"}, "body": f"{MARKER}\nold diff"}]
    calls = run_script("42", comments=comments)
    assert calls[-1] == ["update", {"owner": "o", "repo": "r", "comment_id": 9,
                                    "body": f"{MARKER}\n### d4c build diff\n"}]


@pytest.mark.parametrize("number", ["42; rm -rf /", "0", "-3", "4.2", "", "1" * 11, "42\n43"])
def test_refuses_anything_but_a_pr_number(run_script: Callable[..., list[Any]], number: str) -> None:
    calls = run_script(number)
    assert calls == [["failed", "pr-number.txt does not hold a PR number"]]


def test_refuses_a_pr_of_another_commit(run_script: Callable[..., list[Any]]) -> None:
    calls = run_script("42", head="d" * 40)
    assert calls[-1][0] == "failed" and not any(c[0] in {"create", "update"} for c in calls)


def test_body_is_kept_under_the_comment_limit(run_script: Callable[..., list[Any]]) -> None:
    calls = run_script("5", body="x" * 200_000)
    body = calls[-1][1]["body"]
    assert body.startswith(MARKER) and len(body) < 65_536 and body.endswith("_... cut to fit a comment._\n")


def test_merge_diff_goes_to_the_merged_pr_only(tmp_path: Path, require_tool: Callable[..., str]) -> None:
    script = script_of(WORKFLOW.with_name("release.yml"), "diff-comment")
    (tmp_path / "comment.md").write_text(f"{MARKER}\n### d4c build diff\n\nbody\n")
    prs = [{"number": 3, "merged_at": None}, {"number": 4, "merged_at": "2026-11-26T00:00:00Z"}]
    # COMMIT is the plan's commit (a chained run's own sha is main's head, not the merge)
    calls = run_node(node(require_tool), tmp_path, script, {"head": "e" * 40, "prs": prs},
                     {"COMMENT_FILE": str(tmp_path / "comment.md"), "COMMIT": HEAD})
    assert calls[0] == ["prs", {"owner": "o", "repo": "r", "commit_sha": HEAD}]
    (create,) = [c for c in calls if c[0] == "create"]
    assert create[1]["issue_number"] == 4
    assert create[1]["body"].startswith("<!-- d4c-merge-build-diff -->")  # not the PR's sticky one
    assert "full build on merge, before publishing" in create[1]["body"]
