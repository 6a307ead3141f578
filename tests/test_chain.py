"""Chained release runs past 256 matrix rows: release.yml's `next-chunk` job runs `d4c chain`,
which dispatches release.yml again with exactly the inputs its workflow_dispatch trigger
declares, and the dispatched run's plan job reads them back (a fake of GitHub's dispatch
endpoint in tests/fakes/github_actions.py)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fakes.github_actions import FakeActions
from test_workflow_shards import step
from test_workflows import WORKFLOWS, load

REPO = Path(__file__).resolve().parent.parent
TOKEN = "ghs_chaintoken1234"
COMMIT, BASE = "c" * 40, "b" * 40
IDS = '{"ca_test_big":"sha256:%s"}' % ("e" * 64)


def _release() -> dict[str, Any]:
    return load(WORKFLOWS / "release.yml")


def _declared() -> dict[str, Any]:
    doc = _release()
    return dict(doc["on"]["workflow_dispatch"]["inputs"])  # ruamel reads YAML 1.2: `on` stays a string


def _dispatch(fake: FakeActions, **env: str) -> subprocess.CompletedProcess[str]:
    job = _release()["jobs"]["next-chunk"]
    script = step(job, "d4c chain")["run"]
    values = {"GITHUB_TOKEN": TOKEN, "NEXT_CHUNK": "2", "COMMIT": COMMIT, "BASE": BASE, "REF": "main",
              "GITHUB_REPOSITORY": "dataforcanada/d4c", "GITHUB_RUN_ID": "4242", "GITHUB_API_URL": fake.url,
              "IMAGES": IDS, **env}
    return subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **values}, check=False, timeout=60)


def test_next_chunk_dispatches_the_same_commit_with_the_declared_inputs() -> None:
    job = _release()["jobs"]["next-chunk"]
    assert job["permissions"] == {"contents": "read", "actions": "write"}  # write only where it dispatches
    assert "!cancelled()" in job["if"] and "needs.plan.outputs.next_chunk != ''" in job["if"]
    assert set(job["needs"]) == {"plan", "build", "image", "shard", "reduce"}  # after this chunk's builds
    with FakeActions(TOKEN, {"release.yml": _declared()}, {"main"}) as fake:
        proc = _dispatch(fake)
        assert proc.returncode == 0, proc.stderr
        assert fake.runs == [{"repo": "dataforcanada/d4c", "workflow": "release.yml", "ref": "main", "inputs": {
            "chunk": "2", "commit": COMMIT, "base": BASE, "previous_run": "4242", "images": IDS}}]
        assert _dispatch(fake, IMAGES="").returncode == 0 and fake.runs[-1]["inputs"]["images"] == "{}"
    plan_env = step(_release()["jobs"]["plan"], "d4c plan")["env"]  # the next run's plan reads them back
    assert plan_env["CHUNK"] == "${{ inputs.chunk || '1' }}" and plan_env["PREVIOUS_RUN"] == "${{ inputs.previous_run }}"
    assert plan_env["BEFORE"] == "${{ inputs.base || github.event.before }}" and plan_env["IMAGES"] == "${{ inputs.images }}"
    assert step(job, "d4c chain")["env"]["IMAGES"] == "${{ needs.image.outputs.ids }}"
    checkout = _release()["jobs"]["plan"]["steps"][0]["with"]
    assert checkout["ref"] == "${{ inputs.commit || github.sha }}"
    for name, job in _release()["jobs"].items():  # every other job builds the plan's commit; records/catalog: main
        for s in job["steps"]:
            if str(s.get("uses", "")).startswith("actions/checkout@") and name != "plan":
                assert s["with"]["ref"] in ("${{ needs.plan.outputs.commit }}", "main"), name
                assert s["with"]["ref"] == "main" or "plan" in job["needs"], name


@pytest.mark.parametrize("env,said", [
    ({"GITHUB_TOKEN": "ghs_wrong0000"}, "answered 401: {\"message\": \"Bad credentials\"}"),
    ({"REF": "no-such-branch"}, "answered 422"),
    ({"COMMIT": "HEAD"}, "--commit 'HEAD' is not valid"),
    ({"NEXT_CHUNK": "1"}, "--chunk 1: the first run is the push's"),
    ({"GITHUB_RUN_ID": ""}, "$GITHUB_RUN_ID is not set"),
    ({"GITHUB_TOKEN": ""}, "$GITHUB_TOKEN is not set"),
    ({"IMAGES": '{"ca_x": "latest"}'}, "is not a JSON map of dataset id -> sha256:<64 hex>"),
])
def test_a_refused_dispatch_is_one_line_and_shows_no_token(env: dict[str, str], said: str) -> None:
    with FakeActions(TOKEN, {"release.yml": _declared()}, {"main"}) as fake:
        proc = _dispatch(fake, **env)
        assert proc.returncode in (1, 2) and fake.runs == []
    err = proc.stderr.strip()
    assert said in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert TOKEN not in proc.stdout + err and "ghs_wrong0000" not in proc.stdout + err


def test_without_actions_write_the_dispatch_says_which_permission() -> None:
    with FakeActions(TOKEN, {"release.yml": _declared()}, {"main"}) as fake:
        fake.can_write = False
        proc = _dispatch(fake)
    assert proc.returncode == 1 and "answered 403" in proc.stderr and "actions: write" in proc.stderr
