"""The workflows' shard -> reduce -> diff -> release wiring, as far as it runs here: the jobs
read the plan's matrices, artifact names meet, and the very commands of the shard and reduce
steps, run per plan row over the folders download-artifact would lay out, give the bytes of
one whole build (the container flags swapped for the local runner, the only change). The
same holds across chained runs: with the matrix limit lowered to 1 row, a dataset's two
shards run in two runs of release.yml and its reduce, in the second, takes the first run's
shard through the download steps whose `if:` the plan rows select."""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from d4c import fanout
from d4c.cli import main
from d4c.plan import for_run, plan
from test_build_shards import DS, add_sharded, artifacts
from test_workflows import WORKFLOWS, load

REPO = Path(__file__).resolve().parent.parent
CONTAINER = '--runner container --load-image "image/$DATASET.tar" --image-id "$IMAGE_ID"'
MATRIX = "${{ fromJSON(needs.plan.outputs.json).%s }}"


def steps(job: dict[str, Any], needle: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if needle in "".join(str(s.get(k, "")) for k in ("uses", "run", "with"))]


def step(job: dict[str, Any], needle: str) -> dict[str, Any]:
    (found,) = steps(job, needle)
    return found


def applies(cond: str | None, row: dict[str, Any]) -> bool:
    """A step's `if:` over a matrix row: the only forms the download steps use."""
    if cond is None:
        return True
    m = re.fullmatch(r"matrix\.(\w+) (==|!=) matrix\.(\w+)", cond)
    assert m, cond
    return (row[m.group(1)] == row[m.group(3)]) == (m.group(2) == "==")


@pytest.mark.parametrize("name,key", [("pr", "jobs"), ("release", "release_jobs")])
def test_shard_matrix_reduce_and_diff_are_wired(name: str, key: str) -> None:
    jobs = load(WORKFLOWS / f"{name}.yml")["jobs"]
    for job, part in (("build", "build"), ("shard", "shard"), ("reduce", "reduce")):
        assert jobs[job]["strategy"]["matrix"]["include"] == MATRIX % f"{key}.{part}", job
    assert "image" in jobs["shard"]["needs"] and {"image", "shard"} <= set(jobs["reduce"]["needs"])
    assert "!cancelled()" in jobs["reduce"]["if"]  # one dataset's failed shard fails its own reduce only
    # one image job (a matrix's legs share one set of outputs): its `ids` output is what the shards check
    assert "strategy" not in jobs["image"] and jobs["image"]["outputs"]["ids"] == "${{ steps.save.outputs.ids }}"
    save = step(jobs["image"], "d4c images")
    assert save["id"] == "save" and "--github-output" in save["run"] and '--datasets "$DATASETS"' in save["run"]
    assert save["env"]["DATASETS"] == "${{ toJSON(fromJSON(needs.plan.outputs.json)." + key + ".image.*.dataset) }}"
    assert step(jobs["image"], "upload-artifact")["with"]["name"] == "image"
    for job, needle in (("shard", "--shard"), ("reduce", "--reduce")):
        assert {s["with"]["name"] for s in steps(jobs[job], "path': 'image'")} == {"image"}
        assert CONTAINER in step(jobs[job], needle)["run"]
        assert "fromJSON(needs.image.outputs.ids" in step(jobs[job], needle)["env"]["IMAGE_ID"], job
    built = step(jobs["shard"], "--shard")
    assert built["env"]["SHARD"] == "${{ matrix.shard }}" and "--out shard" in built["run"]
    upload = step(jobs["shard"], "'path': 'shard/'")["with"]
    assert upload["name"] == "shard.${{ matrix.dataset }}.${{ matrix.shard_index }}"
    for down in steps(jobs["reduce"], "pattern"):  # one folder per artifact, this run's and the run before's
        assert {k: down["with"][k] for k in ("pattern", "path")} == {"pattern": "shard.${{ matrix.dataset }}.*",
                                                                     "path": "shards"}
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


def test_cross_run_downloads_take_the_previous_run_of_the_chain() -> None:
    jobs = load(WORKFLOWS / "release.yml")["jobs"]
    for job in ("shard", "reduce"):
        earlier = [s for s in jobs[job]["steps"] if "run-id" in (s.get("with") or {})]
        assert earlier and all(s["with"]["run-id"] == "${{ needs.plan.outputs.previous_run }}" and
                               s["with"]["github-token"] == "${{ github.token }}" and
                               s["if"] == "matrix.image_chunk != matrix.chunk" for s in earlier), job
        assert jobs[job]["permissions"] == {"contents": "read", "actions": "read"}, job
    assert "needs.image.result != 'failure'" in jobs["shard"]["if"]  # a run may hold no new image
    assert jobs["image"]["if"] == "needs.plan.outputs.any_image == 'true'"
    assert [n for n, j in jobs.items() if "actions" in (j.get("permissions") or {}) and
            j["permissions"]["actions"] == "write"] == ["next-chunk"]
    assert not [s for s in load(WORKFLOWS / "pr.yml")["jobs"]["reduce"]["steps"] if "run-id" in (s.get("with") or {})]


def _downloads(job: dict[str, Any], row: dict[str, Any], runs: Path, run: int) -> None:
    """What the job's download-artifact steps of shards lay out for this row, from this run or the one before."""
    for s in steps(job, "pattern"):
        if applies(s.get("if"), row):
            source = runs / str(run - 1 if "run-id" in s["with"] else run)
            pattern = s["with"]["pattern"].replace("${{ matrix.dataset }}", row["dataset"])
            for art in sorted(source.iterdir()):
                if fnmatch.fnmatch(art.name, pattern):
                    shutil.copytree(art, Path(s["with"]["path"] if Path(s["with"]["path"]).is_absolute()
                                              else runs.parent / s["with"]["path"]) / art.name)


def test_the_jobs_commands_over_the_plan_give_the_whole_builds_bytes(repo_copy: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    monkeypatch.setattr(fanout, "CHUNK_ROWS", 1)  # two shards: two runs of the chain
    add_sharded(repo_copy, parts=3, count=2)
    (repo_copy / ".venv").symlink_to(REPO / ".venv")  # the jobs call .venv/bin/d4c in the checkout
    full = plan(repo_copy, "HEAD~1", "HEAD").to_json()
    k = min(r["chunk"] for r in full["release_jobs"]["shard"] if r["dataset"] == DS)  # other demos go first
    chain = [for_run(full, c)["release_jobs"] for c in (k, k + 1)]
    rows = [[r for r in c["shard"] if r["dataset"] == DS] for c in chain]
    assert [[(r["shard"], r["shard_index"], r["image_chunk"]) for r in c] for c in rows] == [[("1/2", 1, k)],
                                                                                           [("2/2", 2, k)]]
    assert [[r["dataset"] for r in c["image"]].count(DS) for c in chain] == [1, 0]  # built once, in run k
    ident = step(load(WORKFLOWS / "release.yml")["jobs"]["reduce"], "--reduce")["env"]["IMAGE_ID"]
    assert "matrix.image_chunk == matrix.chunk && fromJSON(needs.image.outputs.ids" in ident and \
        "|| fromJSON(needs.plan.outputs.images" in ident  # run k+1 checks run k's id, carried by the dispatch
    (reduce_row,) = [r for r in chain[1]["reduce"] if r["dataset"] == DS]
    assert (reduce_row["chunk"], reduce_row["image_chunk"]) == (k + 1, k) and not [
        r for r in chain[0]["reduce"] if r["dataset"] == DS]
    wf = load(WORKFLOWS / "release.yml")["jobs"]
    shard_cmd, reduce_cmd, diff_cmd = (step(wf[j], n)["run"] for j, n in
                                       (("shard", "--shard"), ("reduce", "--reduce"), ("reduce", "d4c diff")))
    assert CONTAINER in shard_cmd and CONTAINER in reduce_cmd
    summary = tmp_path / "summary.md"
    env = {**os.environ, "D4C_REPO": str(repo_copy), "SAMPLE": "", "GITHUB_STEP_SUMMARY": str(summary)}
    runs = repo_copy / "runs"  # each run's artifacts; the reduce job's checkout is repo_copy
    for run, listed in ((k + 1, rows[1]), (k, rows[0])):  # each job on its own machine, in any order
        for row in listed:
            _run(shard_cmd.replace(CONTAINER, "--runner local"), repo_copy,
                 {**env, "DATASET": DS, "SHARD": row["shard"]})
            (runs / str(run)).mkdir(parents=True, exist_ok=True)
            shutil.move(repo_copy / "shard", runs / str(run) / f"shard.{DS}.{row['shard_index']}")
    _downloads(wf["reduce"], reduce_row, runs, k + 1)
    assert sorted(p.name for p in (repo_copy / "shards").iterdir()) == [f"shard.{DS}.1", f"shard.{DS}.2"]
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
