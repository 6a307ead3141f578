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
    issues: {
      listComments: 'listComments',
      updateComment: async (a) => { calls.push(['update', a]); },
      createComment: async (a) => { calls.push(['create', a]); },
    },
  },
  paginate: async (fn, a) => { calls.push(['paginate', a]); return state.comments; },
};
const core = { setFailed: (m) => calls.push(['failed', m]) };
const context = { repo: { owner: 'o', repo: 'r' } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => console.log(JSON.stringify(calls)), (e) => { console.error(e); process.exit(2); });
"""


@pytest.fixture
def run_script(tmp_path: Path, require_tool: Callable[..., str]) -> Callable[..., list[Any]]:
    node = require_tool("node", "nodejs")
    steps = YAML(typ="safe", pure=True).load(WORKFLOW.read_text())["jobs"]["comment"]["steps"]
    script = next(s["with"]["script"] for s in steps if "github-script" in s.get("uses", ""))
    (tmp_path / "script.js").write_text(script)
    (tmp_path / "harness.js").write_text(HARNESS)

    def run(number: str, body: str = f"{MARKER}\n### d4c build diff\n", head: str = HEAD,
            comments: list[dict[str, Any]] | None = None) -> list[Any]:
        report = tmp_path / "report"
        report.mkdir(exist_ok=True)
        (report / "pr-number.txt").write_text(number)
        (report / "comment.md").write_text(body)
        (tmp_path / "state.json").write_text(json.dumps({"head": head, "comments": comments or []}))
        env = {**os.environ, "REPORT_DIR": str(report), "HEAD_SHA": HEAD}
        proc = subprocess.run([node, str(tmp_path / "harness.js"), str(tmp_path / "script.js"),
                               str(tmp_path / "state.json")], capture_output=True, text=True, env=env,
                              check=False, timeout=60)
        assert proc.returncode == 0, proc.stderr
        calls: list[Any] = json.loads(proc.stdout)
        return calls

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
