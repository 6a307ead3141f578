"""The workflows' shard -> reduce -> diff -> release wiring, as far as it runs here: the jobs
read the plan's matrices, artifact names meet, and the very commands of the shard and reduce
steps, run per plan row over the folders download-artifact would lay out, give the bytes of
one whole build (the container flags swapped for the local runner, the only change)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from d4c.cli import main
from d4c.plan import plan
from test_build_shards import DS, add_sharded, artifacts
from test_workflows import WORKFLOWS, load

REPO = Path(__file__).resolve().parent.parent
CONTAINER = '--runner container --load-image "image/$DATASET.tar"'
MATRIX = "${{ fromJSON(needs.plan.outputs.json).%s }}"


def step(job: dict[str, Any], needle: str) -> dict[str, Any]:
    (found,) = [s for s in job["steps"] if needle in "".join(str(s.get(k, "")) for k in ("uses", "run", "with"))]
    return found


@pytest.mark.parametrize("name,key", [("pr", "jobs"), ("release", "release_jobs")])
def test_shard_matrix_reduce_and_diff_are_wired(name: str, key: str) -> None:
    jobs = load(WORKFLOWS / f"{name}.yml")["jobs"]
    for job, part in (("build", "build"), ("image", "reduce"), ("shard", "shard"), ("reduce", "reduce")):
        assert jobs[job]["strategy"]["matrix"]["include"] == MATRIX % f"{key}.{part}", job
    assert "image" in jobs["shard"]["needs"] and {"image", "shard"} <= set(jobs["reduce"]["needs"])
    assert "!cancelled()" in jobs["reduce"]["if"]  # one dataset's failed shard fails its own reduce only
    image = "image.${{ matrix.dataset }}"
    assert step(jobs["image"], "upload-artifact")["with"]["name"] == image
    assert step(jobs["shard"], "path': 'image'")["with"]["name"] == step(jobs["reduce"], "path': 'image'")["with"]["name"] == image
    built = step(jobs["shard"], "--shard")
    assert built["env"]["SHARD"] == "${{ matrix.shard }}" and "--out shard" in built["run"]
    upload = step(jobs["shard"], "'path': 'shard/'")["with"]
    assert upload["name"] == "shard.${{ matrix.dataset }}.${{ matrix.shard_index }}"
    down = step(jobs["reduce"], "pattern")["with"]
    assert down == {"pattern": "shard.${{ matrix.dataset }}.*", "path": "shards"}  # one folder per artifact
    assert "--check" in step(jobs["reduce"], "--reduce")["run"] and "--reduce shards/*" in step(jobs["reduce"], "--reduce")["run"]
    assert "--check-result" in step(jobs["reduce"], "d4c diff")["run"]
    assert "reduce" in jobs[{"pr": "report", "release": "diff-comment"}[name]]["needs"]


def test_runs_on_reaches_release_jobs_only() -> None:
    pr, rel = (load(WORKFLOWS / f"{n}.yml")["jobs"] for n in ("pr", "release"))
    assert all(job["runs-on"] == "ubuntu-24.04" for job in pr.values())  # no PR code on self-hosted runners
    for job in ("build", "shard", "reduce"):
        assert rel[job]["runs-on"] == "${{ matrix.runs_on }}", job
    assert {"build", "shard", "reduce", "diff-comment"} <= set(rel["release"]["needs"])
    assert "!contains(needs.*.result, 'failure')" in rel["release"]["if"]
    assert step(rel["reduce"], "build-${{ matrix.dataset }}")["with"]["path"] == "out/${{ matrix.dataset }}/"


def _run(script: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_the_jobs_commands_over_the_plan_give_the_whole_builds_bytes(repo_copy: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    add_sharded(repo_copy, parts=3, count=2)
    (repo_copy / ".venv").symlink_to(REPO / ".venv")  # the jobs call .venv/bin/d4c in the checkout
    jobs = plan(repo_copy, "HEAD~1", "HEAD").to_json()["jobs"]
    rows = [r for r in jobs["shard"] if r["dataset"] == DS]
    assert [(r["shard"], r["shard_index"]) for r in rows] == [("1/2", 1), ("2/2", 2)]
    assert [r["shards"] for r in jobs["reduce"] if r["dataset"] == DS] == [2]
    assert DS not in [r["dataset"] for r in jobs["build"]]
    wf = load(WORKFLOWS / "pr.yml")["jobs"]
    shard_cmd, reduce_cmd, diff_cmd = (step(wf[j], n)["run"] for j, n in
                                       (("shard", "--shard"), ("reduce", "--reduce"), ("reduce", "d4c diff")))
    assert CONTAINER in shard_cmd and CONTAINER in reduce_cmd
    summary = tmp_path / "summary.md"
    env = {**os.environ, "D4C_REPO": str(repo_copy), "SAMPLE": "", "GITHUB_STEP_SUMMARY": str(summary)}
    downloaded = repo_copy / "shards"
    for row in reversed(rows):  # each job on its own machine, in any order
        _run(shard_cmd.replace(CONTAINER, "--runner local"), repo_copy, {**env, "DATASET": DS, "SHARD": row["shard"]})
        shutil.move(repo_copy / "shard", downloaded / f"shard.{DS}.{row['shard_index']}")
    _run(reduce_cmd.replace(CONTAINER, "--runner local"), repo_copy, {**env, "DATASET": DS})
    _run(diff_cmd, repo_copy, {**env, "DATASET": DS})
    out = repo_copy / "out" / DS
    check = json.loads((out.with_name(f"{DS}.check.json")).read_text())
    assert check["reproducible"] and check["shards"]["count"] == 2
    assert [s["index"] for s in json.loads((out / "manifest.json").read_text())["shards"]] == [1, 2]
    assert (repo_copy / "results" / DS).is_dir() and summary.read_text().strip()
    whole = repo_copy / "whole"
    assert main(["build", DS, "--whole", "--out", str(whole)]) == 0
    assert artifacts(out) == artifacts(whole) and len(artifacts(whole)) == 2
