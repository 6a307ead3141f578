"""`d4c plan --format argo`: the DAG is the plan's (shards -> reduce -> diff), every reference
resolves, and the manifest validates against the Argo Workflows API schema (the npm package
@kubernetes-models/argo-workflows, pinned in tests/argo/package-lock.json)."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import missing_tool
from d4c import argo, fanout
from d4c.errors import UsageError
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parent.parent
CHECKER = REPO / "tests" / "argo" / "validate.mjs"


HEAVY = ["self-hosted", "linux", "x64", "big-disk"]


def row(ds: str, shards: int, runs_on: list[str] | None = None) -> dict[str, Any]:
    return {"dataset": ds, "version": "1.0.0", "cache_key": "d4c-sources-x", "sample": False,
            "runs_on": runs_on or ["ubuntu-24.04"], "shards": shards}


def manifest() -> dict[str, Any]:
    rows = [row("ca_test_whole", 0), row("ca_test_big", 3), row("ca_test_big-too", 2),
            row("ca_test_heavy", 2, HEAVY), row("ca_test_heavy-whole", 0, ["self-hosted", "gpu.a100"])]
    plan = {"release_jobs": fanout.jobs(rows)}
    return argo.workflow(plan, "https://example.org/d4c.git", "a" * 40, "registry.example.org/d4c-build:1")


def test_the_dag_is_the_plans() -> None:
    doc = manifest()
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    tasks = {t["name"]: t for t in templates[doc["spec"]["entrypoint"]]["dag"]["tasks"]}
    assert sorted(templates) == ["build", "build-on-2", "diff", "plan", "reduce-2", "reduce-2-on-1", "reduce-3",
                                 "shard", "shard-on-1"]
    big = [n for n in tasks if n.startswith("ca-test-big-1-")]  # sorted by id: big, big-too, whole
    assert big == ["ca-test-big-1-shard-1", "ca-test-big-1-shard-2", "ca-test-big-1-shard-3",
                   "ca-test-big-1-reduce", "ca-test-big-1-diff"]
    reduce = tasks["ca-test-big-1-reduce"]
    assert reduce["template"] == "reduce-3" and reduce["depends"] == " && ".join(big[:3])
    assert [p["value"] for t in big[:3] for p in tasks[t]["arguments"]["parameters"] if p["name"] == "shard"] == \
        ["1/3", "2/3", "3/3"]
    assert tasks["ca-test-whole-5-diff"]["depends"] == "ca-test-whole-5-build"
    assert "--reduce" in templates["reduce-3"]["container"]["command"]
    for name, task in tasks.items():  # every reference resolves
        tpl = templates[task["template"]]
        wanted = {p["name"] for p in tpl["inputs"]["parameters"]}
        assert {p["name"] for p in task["arguments"]["parameters"]} == wanted, name
        deps = set(task.get("depends", "").split(" && ")) - {""}
        assert deps <= set(tasks), name
        given = {a["name"] for a in task["arguments"].get("artifacts", [])}
        assert given == {a["name"] for a in tpl["inputs"]["artifacts"]} - {"repo"}, name
        for art in task["arguments"].get("artifacts", []):
            _, src, _, _, out = art["from"].strip("{}").split(".")
            assert src in deps and out in {a["name"] for a in templates[tasks[src]["template"]]["outputs"]["artifacts"]}
    assert manifest() == doc  # the same plan, the same manifest


def test_runs_on_becomes_a_node_selector() -> None:
    doc = manifest()
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    tasks = {t["name"]: t["template"] for t in templates["plan"]["dag"]["tasks"]}
    heavy = {"d4c.runs-on/big-disk": "true", "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}
    assert templates["shard-on-1"]["nodeSelector"] == templates["reduce-2-on-1"]["nodeSelector"] == heavy
    assert templates["build-on-2"]["nodeSelector"] == {"d4c.runs-on/gpu.a100": "true"}  # self-hosted: any node
    assert [v for k, v in tasks.items() if k.startswith("ca-test-heavy-3-")] == ["shard-on-1", "shard-on-1",
                                                                               "reduce-2-on-1", "diff"]
    assert tasks["ca-test-heavy-whole-4-build"] == "build-on-2"
    assert all("nodeSelector" not in templates[t] for t in ("build", "shard", "reduce-2", "diff"))  # the default
    assert {**templates["shard-on-1"], "name": "shard", "nodeSelector": None} == {**templates["shard"],
                                                                                  "nodeSelector": None}
    for labels in (["a" * 64], ["big-"], ["linux", "windows"], ["x64", "ARM64"]):
        with pytest.raises(UsageError, match=r"datasets/ca_x/recipe.yaml: runs_on label .* has no Kubernetes node label"):
            argo.node_selector(labels, "ca_x")
    assert argo.node_selector(["Linux", "X64", "big"], "ca_x") == {
        "d4c.runs-on/big": "true", "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}  # GitHub: any case


def node_checker() -> str:
    node = shutil.which("node")
    if not node or not (REPO / "tests" / "argo" / "node_modules" / "@kubernetes-models" / "argo-workflows").is_dir():
        missing_tool("node and tests/argo/node_modules are needed (make test runs scripts/install-test-tools.sh)")
    return str(node)


def test_the_manifest_validates_against_the_argo_schema(tmp_path: Path) -> None:
    node = node_checker()
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    doc = manifest()
    good.write_text(json.dumps(doc))
    broken = copy.deepcopy(doc)
    broken["spec"]["templates"][0]["dag"]["tasks"][0]["depends"] = ["not", "a", "string"]
    broken["spec"]["templates"][1]["container"]["image"] = 7
    next(t for t in broken["spec"]["templates"] if "nodeSelector" in t)["nodeSelector"]["kubernetes.io/os"] = 7
    bad.write_text(json.dumps(broken))
    ok = subprocess.run([node, str(CHECKER), str(good)], capture_output=True, text=True, check=False, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    no = subprocess.run([node, str(CHECKER), str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert no.returncode == 1 and "depends must be string" in no.stdout and "image must be string" in no.stdout
    assert "nodeSelector/kubernetes.io~1os must be string" in no.stdout, no.stdout  # a field the schema types


def test_cli_prints_yaml_and_refuses_credentials(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "d4c", "plan", "--base", "HEAD", "--format", "argo", "--argo-image", "d4c:1"]
    env = {"PATH": "/usr/bin:/bin", "D4C_REPO": str(REPO), "HOME": str(tmp_path)}
    runs = [subprocess.run([*base, "--argo-repo", "https://example.org/d4c.git"], capture_output=True, text=True,
                           check=False, env=env, cwd=REPO) for _ in range(2)]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    doc = YAML(typ="safe").load(runs[0].stdout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert doc["kind"] == "Workflow" and {"name": "revision", "value": head} in doc["spec"]["arguments"]["parameters"]
    bad = subprocess.run([*base, "--argo-repo", "https://user:token@example.org/d4c.git"], capture_output=True,
                         text=True, check=False, env=env, cwd=REPO)
    assert bad.returncode == 2 and "token" not in bad.stderr and "carries credentials" in bad.stderr
    for url in ("HTTPS://user:token@example.org/d4c.git", "git+ssh.v2://user:token@example.org/d4c.git"):
        with pytest.raises(UsageError, match="carries credentials"):  # any scheme, any case
            argo.workflow({"release_jobs": {}}, url, "a" * 40, "x")
    with pytest.raises(UsageError, match="--argo-repo is required"):
        argo.workflow({"release_jobs": {}}, "", "a" * 40, "x")
