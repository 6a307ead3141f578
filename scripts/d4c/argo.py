"""`d4c plan --format argo`: the plan's release jobs as an Argo Workflows manifest.

The same plan JSON the workflows read becomes one Workflow whose DAG runs, per dataset, a
whole build or its shards -> the reduce (with --check) -> the diff, passing folders as Argo
artifacts (the cluster's artifact repository holds them). Publishing stays with the release
workflow. docs/scale.md.
"""
from __future__ import annotations

import re
from typing import Any

from d4c.errors import UsageError

API = "argoproj.io/v1alpha1"
WORK = "/work"
D4C = ["/opt/d4c/bin/python", "-m", "d4c"]  # the d4c image's interpreter (docker/Dockerfile)


def _param(name: str) -> str:
    return "{{inputs.parameters." + name + "}}"


def _container(args: list[str]) -> dict[str, Any]:
    """The d4c image, working in the checkout (the `repo` artifact)."""
    return {"name": "main", "image": "{{workflow.parameters.image}}", "command": [*D4C, *args],
            "workingDir": f"{WORK}/repo", "env": [{"name": "D4C_REPO", "value": f"{WORK}/repo"}]}


def _repo() -> dict[str, Any]:
    # full history: SOURCE_DATE_EPOCH is the recipe's last commit time
    return {"name": "repo", "path": f"{WORK}/repo",
            "git": {"repo": "{{workflow.parameters.repo}}", "revision": "{{workflow.parameters.revision}}"}}


def _template(name: str, params: list[str], args: list[str], outputs: dict[str, str],
              artifacts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"name": name,
            "inputs": {"parameters": [{"name": p} for p in params], "artifacts": [_repo(), *(artifacts or [])]},
            "container": _container(args),
            "outputs": {"artifacts": [{"name": k, "path": v} for k, v in outputs.items()]}}


def _fixed_templates() -> list[dict[str, Any]]:
    out = f"{WORK}/out"
    return [
        _template("build", ["dataset"], ["build", _param("dataset"), "--check", "--out", f"{out}/build"],
                  {"build": out}),
        _template("shard", ["dataset", "shard"], ["build", _param("dataset"), "--shard", _param("shard"),
                                                  "--out", f"{WORK}/shard"], {"shard": f"{WORK}/shard"}),
        _template("diff", ["dataset"], ["diff", _param("dataset"), "--build", f"{out}/build", "--check-result",
                                        f"{out}/build.check.json", "--save", f"{WORK}/results"],
                  {"diff": f"{WORK}/results"}, [{"name": "build", "path": out}]),
    ]


def _reduce_template(name: str, count: int) -> dict[str, Any]:
    """A reduce takes one artifact per shard, so each shard count has a template of its own."""
    dirs = [f"{WORK}/shards/{i}" for i in range(1, count + 1)]
    return _template(name, ["dataset"], ["build", _param("dataset"), "--check", "--out", f"{WORK}/out/build",
                                         "--reduce", *dirs], {"build": f"{WORK}/out"},
                     [{"name": f"shard-{i}", "path": d} for i, d in enumerate(dirs, 1)])


def _task(name: str, template: str, dataset: str, depends: list[str] | None = None,
          params: dict[str, str] | None = None, artifacts: dict[str, str] | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"name": name, "template": template, "arguments": {
        "parameters": [{"name": k, "value": v} for k, v in {"dataset": dataset, **(params or {})}.items()]}}
    if artifacts:
        task["arguments"]["artifacts"] = [{"name": k, "from": "{{tasks." + t + ".outputs.artifacts." + a + "}}"}
                                          for k, (t, a) in ((k, v.split(".")) for k, v in artifacts.items())]
    if depends:
        task["depends"] = " && ".join(depends)
    return task


def _slug(n: int, dataset: str) -> str:
    """A task name from a dataset id: letters, digits and `-` (the number keeps `a_b` and `a-b` apart)."""
    return f"{re.sub(r'[^a-z0-9]+', '-', dataset)[:40].strip('-')}-{n}"


def tasks(jobs: dict[str, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], set[int]]:
    """The DAG's tasks, and the shard counts that need a reduce template."""
    out: list[dict[str, Any]] = []
    counts: set[int] = set()
    rows = sorted([*jobs.get("build", []), *jobs.get("reduce", [])], key=lambda r: r["dataset"])
    for n, row in enumerate(rows, 1):
        ds, slug, count = row["dataset"], _slug(n, row["dataset"]), int(row["shards"])
        if count:
            counts.add(count)
            shards = [f"{slug}-shard-{i}" for i in range(1, count + 1)]
            out += [_task(s, "shard", ds, params={"shard": f"{i}/{count}"}) for i, s in enumerate(shards, 1)]
            out.append(_task(f"{slug}-reduce", f"reduce-{count}", ds, shards,
                             artifacts={f"shard-{i}": f"{s}.shard" for i, s in enumerate(shards, 1)}))
            built = f"{slug}-reduce"
        else:
            out.append(_task(f"{slug}-build", "build", ds))
            built = f"{slug}-build"
        out.append(_task(f"{slug}-diff", "diff", ds, [built], artifacts={"build": f"{built}.build"}))
    return out, counts


def workflow(plan: dict[str, Any], repo: str, revision: str, image: str) -> dict[str, Any]:
    """The Workflow for the plan's release jobs (what `release.yml` builds before publishing)."""
    for name, value in (("--argo-repo", repo), ("--argo-image", image)):
        if not value or any(c.isspace() for c in value):
            raise UsageError(f"d4c plan --format argo: {name} is required (a URL or image name, no spaces)")
    if re.match(r"^[a-z][a-z0-9+.-]*://[^/?#]*@", repo, re.IGNORECASE):  # printed and stored: no credentials
        raise UsageError("--argo-repo carries credentials; give the plain URL and let the cluster's git "
                         "artifact credentials (usernameSecret/passwordSecret) sign in")
    dag, counts = tasks(plan["release_jobs"])
    return {
        "apiVersion": API, "kind": "Workflow",
        "metadata": {"generateName": "d4c-build-", "labels": {"app.kubernetes.io/part-of": "d4c"}},
        "spec": {
            "entrypoint": "plan",
            "arguments": {"parameters": [{"name": "repo", "value": repo}, {"name": "revision", "value": revision},
                                         {"name": "image", "value": image}]},
            "templates": [{"name": "plan", "dag": {"tasks": dag}}, *_fixed_templates(),
                          *(_reduce_template(f"reduce-{c}", c) for c in sorted(counts))],
        },
    }
