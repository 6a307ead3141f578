"""`d4c plan --format argo`: the plan's release jobs as an Argo Workflows manifest.

The same plan JSON the workflows read becomes one Workflow whose DAG runs, per dataset, a
whole build or its shards -> the reduce (with --check) -> the diff, passing folders as Argo
artifacts (the cluster's artifact repository holds them). Publishing stays with the release
workflow. docs/scale.md.
"""
from __future__ import annotations

import copy
import re
from typing import Any

from d4c import fanout
from d4c.errors import UsageError

API = "argoproj.io/v1alpha1"
RUNS_ON = "d4c.runs-on/"  # the node label prefix a recipe's own runs_on labels map to
# GitHub's runner labels with a well-known Kubernetes node label (kubernetes.io/os, /arch)
WELL_KNOWN = {"linux": ("kubernetes.io/os", "linux"), "windows": ("kubernetes.io/os", "windows"),
              "x64": ("kubernetes.io/arch", "amd64"), "arm64": ("kubernetes.io/arch", "arm64"),
              "arm": ("kubernetes.io/arch", "arm")}
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")  # a Kubernetes label name
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


def node_selector(labels: list[str], dataset: str) -> dict[str, str]:
    """A recipe's runs_on as a nodeSelector (docs/scale.md): the default hosted runner and
    `self-hosted` ask for nothing (every node of the cluster is one); linux, windows, x64,
    ARM64, ARM become kubernetes.io/os and /arch; any other label L becomes `d4c.runs-on/L: "true"`."""
    if tuple(labels) == fanout.DEFAULT_RUNNER:
        return {}
    out: dict[str, str] = {}
    for label in labels:
        if label.lower() == "self-hosted":
            continue
        key, value = WELL_KNOWN.get(label.lower()) or (RUNS_ON + label, "true")
        if not LABEL_NAME.match(label) or out.get(key, value) != value:
            raise UsageError(f"datasets/{dataset}/recipe.yaml: runs_on label {label!r} has no Kubernetes node label "
                             "(at most 63 characters, ending in a letter or digit; one OS and one architecture)",
                             hint="rename the label, or place the pods with a podSpecPatch (docs/scale.md)")
        out[key] = value
    return dict(sorted(out.items()))


def _placed(template: dict[str, Any], n: int, selector: dict[str, str]) -> dict[str, Any]:
    """The template for pods that need nodes with these labels: `<name>-on-<n>` and a nodeSelector."""
    return {**copy.deepcopy(template), "name": f"{template['name']}-on-{n}", "nodeSelector": dict(selector)}


def _slug(n: int, dataset: str) -> str:
    """A task name from a dataset id: letters, digits and `-` (the number keeps `a_b` and `a-b` apart)."""
    return f"{re.sub(r'[^a-z0-9]+', '-', dataset)[:40].strip('-')}-{n}"


class _Placement:
    """The templates the tasks name: a reduce template per shard count, and a copy of the build,
    shard and reduce templates per distinct nodeSelector (numbered in order of first use)."""

    def __init__(self) -> None:
        self.counts: set[int] = set()
        self.selectors: list[dict[str, str]] = []
        self.placed: set[tuple[str, int]] = set()  # (template, selector number)

    def name(self, template: str, row: dict[str, Any]) -> str:
        selector = node_selector(list(row["runs_on"]), row["dataset"])
        if not selector:
            return template
        if selector not in self.selectors:
            self.selectors.append(selector)
        n = self.selectors.index(selector) + 1
        self.placed.add((template, n))
        return f"{template}-on-{n}"


def tasks(jobs: dict[str, list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], _Placement]:
    """The DAG's tasks, and the templates they need beyond the fixed ones."""
    out: list[dict[str, Any]] = []
    place = _Placement()
    rows = sorted([*jobs.get("build", []), *jobs.get("reduce", [])], key=lambda r: r["dataset"])
    for n, row in enumerate(rows, 1):
        ds, slug, count = row["dataset"], _slug(n, row["dataset"]), int(row["shards"])
        if count:
            place.counts.add(count)
            shards = [f"{slug}-shard-{i}" for i in range(1, count + 1)]
            out += [_task(s, place.name("shard", row), ds, params={"shard": f"{i}/{count}"})
                    for i, s in enumerate(shards, 1)]
            out.append(_task(f"{slug}-reduce", place.name(f"reduce-{count}", row), ds, shards,
                             artifacts={f"shard-{i}": f"{s}.shard" for i, s in enumerate(shards, 1)}))
            built = f"{slug}-reduce"
        else:
            out.append(_task(f"{slug}-build", place.name("build", row), ds))
            built = f"{slug}-build"
        out.append(_task(f"{slug}-diff", "diff", ds, [built], artifacts={"build": f"{built}.build"}))
    return out, place


def workflow(plan: dict[str, Any], repo: str, revision: str, image: str) -> dict[str, Any]:
    """The Workflow for the plan's release jobs (what `release.yml` builds before publishing)."""
    for name, value in (("--argo-repo", repo), ("--argo-image", image)):
        if not value or any(c.isspace() for c in value):
            raise UsageError(f"d4c plan --format argo: {name} is required (a URL or image name, no spaces)")
    if re.match(r"^[a-z][a-z0-9+.-]*://[^/?#]*@", repo, re.IGNORECASE):  # printed and stored: no credentials
        raise UsageError("--argo-repo carries credentials; give the plain URL and let the cluster's git "
                         "artifact credentials (usernameSecret/passwordSecret) sign in")
    dag, place = tasks(plan["release_jobs"])
    plain = [*_fixed_templates(), *(_reduce_template(f"reduce-{c}", c) for c in sorted(place.counts))]
    by_name = {t["name"]: t for t in plain}
    placed = [_placed(by_name[t], n, place.selectors[n - 1]) for t, n in sorted(place.placed, key=lambda x: (x[1], x[0]))]
    return {
        "apiVersion": API, "kind": "Workflow",
        "metadata": {"generateName": "d4c-build-", "labels": {"app.kubernetes.io/part-of": "d4c"}},
        "spec": {
            "entrypoint": "plan",
            "arguments": {"parameters": [{"name": "repo", "value": repo}, {"name": "revision", "value": revision},
                                         {"name": "image", "value": image}]},
            "templates": [{"name": "plan", "dag": {"tasks": dag}}, *plain, *placed],
        },
    }
