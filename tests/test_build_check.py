"""`d4c build --check`: the demo datasets are reproducible, a wall-clock transform is not."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from d4c import schemas
from d4c.cli import main

DATASETS = ("ca_d4c_provinces-territories", "ca_statcan_2021_population-density_provinces")


@pytest.fixture
def repo(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    return repo_copy


@pytest.mark.parametrize("dataset", DATASETS)
def test_demo_dataset_check_passes(repo: Path, dataset: str, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["build", dataset, "--check"]) == 0, capfd.readouterr().err
    out = repo / ".d4c" / "build" / dataset / "v1.0.0"
    manifest = json.loads((out / "manifest.json").read_text())
    schemas.validator("manifest").validate(manifest)
    assert (out / "manifest.json").read_text() == json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert manifest["source_date_epoch"] == 1767225600  # the repo_copy commit: 2026-01-01T00:00:00Z
    assert manifest["code"]["dirty"] is False and len(manifest["code"]["commit"]) == 40
    # The local runner always runs in bubblewrap; a machine without it fails the build instead.
    assert manifest["environment"]["sandbox"] == "bubblewrap"
    assert manifest["environment"]["network_isolation"] == "bwrap"
    assert set(manifest["dataset"]["files"]) == {"recipe.yaml", "transform.py"}
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([*(o["file"] for o in manifest["outputs"]), "manifest.json", "provenance.json"])
    for o in manifest["outputs"]:
        data = (out / o["file"]).read_bytes()
        assert o["size"] == len(data) and o["rows"] == 13
        assert len(o["pieces_sha1"]) == 40  # one 16 MiB piece
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["predicateType"] == "https://slsa.dev/provenance/v1"
    assert [s["digest"]["sha256"] for s in prov["subject"]] == [o["sha256"] for o in manifest["outputs"]]
    assert prov["predicate"]["buildDefinition"]["buildType"].endswith("/docs/build-type.md")
    assert (repo / "docs" / "build-type.md").is_file()
    commit = manifest["code"]["commit"]
    for dep in prov["predicate"]["buildDefinition"]["resolvedDependencies"]:
        assert dep["digest"], dep
        if "uri" in dep:  # a URI with a scheme: a download URL, a pinned git URL or urn:sha256
            assert dep["uri"].startswith(("https://", f"git+https://github.com/dataforcanada/d4c@{commit}#",
                                          "git+https://github.com/dataforcanada/d4c", "urn:sha256:")), dep
    names = {d["name"] for d in prov["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert f"datasets/{dataset}/transform.py" in names and f"datasets/{dataset}/recipe.yaml" in names
    left = [p.name for p in out.parent.iterdir() if p.name != out.name]
    assert left == ["v1.0.0.check.json"], "check folders left behind"
    assert json.loads((out.parent / "v1.0.0.check.json").read_text())["reproducible"] is True


def test_population_density_values(repo: Path) -> None:
    out = repo / "out"
    assert main(["build", DATASETS[1], "--out", str(out)]) == 0
    csv = (out / f"{DATASETS[1]}_v1.0.0_table-csv.csv").read_text().splitlines()
    assert csv[0] == "pruid,population_2021,land_area_km2,density_per_km2"
    assert csv[1] == "10,510550,370514.08,1.38"  # 510550 / 370514.08 = 1.3779...
    assert csv[-1] == "62,36858,1936113.63,0.02"


def test_sample_build_merges_sample_params(repo: Path) -> None:
    recipe = repo / "datasets" / DATASETS[1] / "recipe.yaml"
    recipe.write_text(recipe.read_text() + "sample:\n  params:\n    density_decimals: 1\n")
    out = repo / "out"
    assert main(["build", DATASETS[1], "--sample", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sample"] is True and manifest["params"] == {"density_decimals": 1}
    assert (out / f"{DATASETS[1]}_v1.0.0_table-csv.csv").read_text().splitlines()[1] == "10,510550,370514.08,1.4"


WALL_CLOCK = '''import time
import pandas as pd


def build(ctx):
    pop = pd.read_csv(ctx.source("population"))
    pop["built_at_ns"] = time.time_ns()  # the mistake: a wall-clock value in the data
    ctx.write_parquet("table", pop)
    ctx.write_csv("table-csv", pop.drop(columns=["built_at_ns"]))
'''


def test_check_catches_a_wall_clock_transform(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    dataset_id = "ca_test_wall-clock"
    folder = repo / "datasets" / dataset_id
    shutil.copytree(repo / "datasets" / DATASETS[1], folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(f"id: {DATASETS[1]}", f"id: {dataset_id}"))
    (folder / "transform.py").write_text(WALL_CLOCK)
    out = repo / "out" / "wall-clock"
    assert main(["build", dataset_id, "--check", "--out", str(out)]) == 1
    err = capfd.readouterr().err
    artifact = f"{dataset_id}_v1.0.0_table.parquet"
    assert f"--check: {artifact} differs between two builds" in err
    assert "first differing row: 0, column 'built_at_ns'" in err
    assert f"error: build is not reproducible: {artifact} differs" in err.strip().splitlines()[-1]
    assert not out.exists()
    kept = out.with_name("wall-clock.check-differs")
    assert (kept / "run1" / artifact).is_file() and (kept / "run2" / artifact).is_file()


RECORDER = '''import json, os, socket, time
import pandas as pd

def build(ctx):
    seen = {"tz": os.environ.get("TZ"), "tzname": time.tzname[0], "locale": os.environ.get("LC_ALL"),
            "umask": os.umask(0o022), "build_path": str(ctx.source("population")), "cwd": os.getcwd(),
            "hostname": socket.gethostname(), "user": os.environ.get("USER"),
            "cpus": len(os.sched_getaffinity(0)),
            "listing": os.listdir(os.path.dirname(os.path.abspath(__file__)))}
    df = pd.DataFrame({"pruid": [1], "seen": [json.dumps(seen, sort_keys=True)]})
    ctx.write_parquet("table", df)
    ctx.write_csv("table-csv", df)
'''


def test_check_variations_reach_the_transform(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A transform that records its world sees a different value in the second build for every
    variation, so --check fails for it, and both builds are kept for the report."""
    import subprocess

    import pyarrow.parquet as pq

    template = "ca_statcan_2021_population-density_provinces"
    folder = repo / "datasets" / "ca_test_recorder"
    shutil.copytree(repo / "datasets" / template, folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(f"id: {template}", "id: ca_test_recorder"))
    (folder / "transform.py").write_text(RECORDER)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "recorder"], cwd=repo, check=True)
    assert main(["build", "ca_test_recorder", "--check"]) == 1
    assert "build is not reproducible" in capfd.readouterr().err
    kept = repo / ".d4c" / "build" / "ca_test_recorder" / "v1.0.0.check-differs"
    runs = [json.loads(pq.read_table(next((kept / f"run{i}").glob("*.parquet"))).column("seen")[0].as_py())
            for i in (1, 2)]
    assert runs[0]["tz"] == "UTC" and runs[0]["umask"] == 0o022 and runs[0]["build_path"].startswith("/d4c/")
    assert runs[1]["listing"] == runs[0]["listing"][::-1] and len(runs[0]["listing"]) > 1
    one_cpu = len(os.sched_getaffinity(0)) == 1  # nothing to take away on a one-CPU machine
    for key in runs[0]:
        if not (key == "cpus" and one_cpu):
            assert runs[0][key] != runs[1][key], f"{key} is the same in both builds: {runs[0][key]!r}"
