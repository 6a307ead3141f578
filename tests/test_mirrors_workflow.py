"""The pieces of the scheduled mirror-health workflow (.github/workflows/mirrors.yml):
`d4c mirrors issues` (one issue per broken copy, with the reproducing command),
`d4c mirrors publish` / `pull` (the health file next to the catalog, read back over real
HTTP as the next run's baseline), and the workflow's issue script run by node against a
recording GitHub client."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from d4c.cli import main
from d4c.mirrors.inventory import cached
from d4c.mirrors.issues import marker
from fakes.internet_archive import FakeInternetArchive
from fakes.zenodo import FakeZenodo
from test_mirrors_repair import DATE, checked, targets
from test_mirrors_support import World
from test_release_support import MotoS3, moto_s3  # noqa: F401
from test_workflows import WORKFLOWS, load
from test_workflows_comment import script_of


@pytest.fixture
def world(tmp_path: Path, moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("D4C_REPO", str(tmp_path))
    zenodo, ia = FakeZenodo("zen-token"), FakeInternetArchive("a", "s")
    zenodo.start()
    ia.start()
    w = World(tmp_path, moto_s3, zenodo, ia, mirrors=("http", "zenodo", "ia"))
    try:
        yield w
    finally:
        w.close()
        zenodo.stop()
        ia.stop()


def config(w: World) -> Path:
    """The test targets config, publishing the catalog on the HTTP-served local target."""
    path = targets(w)
    doc = json.loads(path.read_text())
    doc["targets"] = [t for t in doc["targets"] if t["name"] != "s3"]
    doc["catalog"] = {"target": "http", "key": "catalog/catalog.parquet"}
    path.write_text(json.dumps(doc))
    return path


def test_issues_name_each_broken_copy_once_with_the_reproducing_command(world: World, tmp_path: Path) -> None:
    (world.tmp / "www" / world.key()).unlink()
    assert checked(world, tier=1) == {(world.data["file"], "http"): "missing"}
    out = tmp_path / "issues.json"
    assert main(["mirrors", "issues", "--health-dir", str(world.tmp / "health"), "--catalog",
                 str(world.catalog), "--out", str(out)]) == 1
    doc = json.loads(out.read_text())
    (issue,) = doc["broken"]  # tier 0 (fresh) and tier 1 name the same copy: one issue
    href = world.data["urls"]["http"]
    assert issue["marker"] == marker("http", href) and issue["body"].startswith(issue["marker"])
    assert issue["title"] == f"mirror health: {world.data['file']} missing on http"
    assert f"d4c mirrors check --catalog {world.catalog} --tier 1 --date {DATE}" in issue["body"]
    assert f"curl -sSI -H 'Origin: https://dataforcanada.org' -H 'x-amz-checksum-mode: ENABLED' {href}" \
        in issue["body"]
    assert marker("zenodo", world.data["urls"]["zenodo"]) in doc["ok"] and issue["marker"] not in doc["ok"]
    # an issue opened when main hrefs were all `main` closes once that copy passes, not before
    assert marker("main", world.files[2]["urls"]["http"]) in doc["ok"] and marker("main", href) not in doc["ok"]
    assert doc["label"] == "mirror-health" and doc["health"] == f"{DATE}.parquet"


def test_publish_beside_the_catalog_and_pull_it_back_over_http(world: World, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    conf = config(world)
    fresh = tmp_path / "fresh"
    assert main(["mirrors", "pull", "--targets", str(conf), "--health-dir", str(fresh)]) == 0
    assert "no published health file yet" in capsys.readouterr().err
    checked(world, tier=1)
    assert main(["mirrors", "publish", "--targets", str(conf), "--health-dir", str(world.tmp / "health")]) == 0
    err = capsys.readouterr().err
    assert f"published {world.http.url}/catalog/health/latest.parquet" in err
    folder = world.tmp / "www" / "catalog" / "health"
    assert sorted(p.name for p in folder.iterdir()) == [f"{DATE}.md", f"{DATE}.parquet", "latest.parquet"]
    assert main(["mirrors", "pull", "--targets", str(conf), "--health-dir", str(fresh)]) == 0
    assert (fresh / f"{DATE}.parquet").read_bytes() == (world.tmp / "health" / f"{DATE}.parquet").read_bytes()
    (folder / "latest.parquet").write_bytes(b"<html>not parquet</html>")
    assert main(["mirrors", "pull", "--targets", str(conf), "--health-dir", str(fresh)]) == 1
    assert "latest.parquet is not a health file" in capsys.readouterr().err


def test_the_workflow_least_privilege_and_its_steps() -> None:
    doc = load(WORKFLOWS / "mirrors.yml")
    on = doc.get("on", doc.get(True))
    assert set(on) == {"schedule", "workflow_dispatch"} and doc["permissions"] == {}
    jobs = doc["jobs"]
    assert jobs["check"]["permissions"] == {"contents": "read"}
    assert jobs["issues"]["permissions"] == {"issues": "write"}
    assert jobs["publish"]["permissions"] == {"contents": "read", "id-token": "write"}
    assert jobs["publish"]["environment"] == "mirrors" and "secrets." not in json.dumps(doc)
    runs = [s.get("run", "") for s in jobs["check"]["steps"]]
    assert ".venv/bin/d4c mirrors check --tier 2 --health-dir health --no-progress" in runs
    tier3 = next(s for s in jobs["check"]["steps"] if "--tier 3" in s.get("run", ""))
    assert tier3["if"] == "steps.tiers.outcome == 'failure'"
    # Manifests and bundles are fetched once, not every day: the cache is where d4c keeps them.
    cache = next(s for s in jobs["check"]["steps"] if "actions/cache@" in s.get("uses", ""))
    home = Path(cache["with"]["path"].replace("~", str(Path.home()), 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("D4C_CACHE", raising=False)
        mp.delenv("XDG_CACHE_HOME", raising=False)
        assert cached("ab" * 32).parent.parent == home


HARNESS = """
const fs = require('fs');
const [script, state] = [fs.readFileSync(process.argv[2], 'utf8'), JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))];
const calls = [];
const rec = (name) => async (a) => { calls.push([name, a]); return { data: {} }; };
const github = {
  rest: { issues: { listForRepo: 'listForRepo', create: rec('create'), update: rec('update'),
                    createComment: rec('comment') } },
  paginate: async (fn, a) => { calls.push(['list', a]); return state.open; },
};
const core = { info: () => {}, setFailed: (m) => calls.push(['failed', m]) };
const context = { repo: { owner: 'o', repo: 'r' } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', 'core', script)(require, github, context, core)
  .then(() => console.log(JSON.stringify(calls)), (e) => { console.error(e); process.exit(2); });
"""


def test_the_issue_script_opens_updates_and_closes_one_issue_per_copy(
        tmp_path: Path, require_tool: Callable[..., str]) -> None:
    node = require_tool("node", "nodejs")
    a, b, c = (marker("s3", f"https://x/{n}") for n in "abc")
    doc = {"label": "mirror-health", "health": "2026-12-01.parquet", "ok": [c, marker("s3", "https://x/d")],
           "broken": [{"marker": a, "title": "mirror health: a missing on s3", "body": f"{a}\nnew"},
                      {"marker": b, "title": "mirror health: b corrupt on s3", "body": f"{b}\nbody"}]}
    open_issues = [{"number": 5, "body": f"{a}\nold"}, {"number": 6, "body": f"{c}\nold"},
                   {"number": 7, "body": f"{b}\nquoted in a PR", "pull_request": {}}]
    (tmp_path / "issues.json").write_text(json.dumps(doc))
    (tmp_path / "script.js").write_text(script_of(WORKFLOWS / "mirrors.yml", "issues"))
    (tmp_path / "harness.js").write_text(HARNESS)
    (tmp_path / "state.json").write_text(json.dumps({"open": open_issues}))
    proc = subprocess.run([node, str(tmp_path / "harness.js"), str(tmp_path / "script.js"),
                           str(tmp_path / "state.json")], capture_output=True, text=True, check=False,
                          timeout=60, env={"ISSUES_FILE": str(tmp_path / "issues.json"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    calls: list[Any] = json.loads(proc.stdout)
    assert calls[0] == ["list", {"owner": "o", "repo": "r", "state": "open", "labels": "mirror-health",
                                 "per_page": 100}]
    assert ["update", {"owner": "o", "repo": "r", "issue_number": 5, "title": doc["broken"][0]["title"],
                       "body": f"{a}\nnew"}] in calls
    (created,) = [x for x in calls if x[0] == "create"]  # the PR that quotes b is not its issue
    assert created[1]["labels"] == ["mirror-health"] and created[1]["body"] == f"{b}\nbody"
    closing = [x for x in calls if x[1].get("issue_number") == 6]
    assert [x[0] for x in closing] == ["comment", "update"] and closing[1][1]["state"] == "closed"
    assert not any(x[1].get("issue_number") == 7 for x in calls)
