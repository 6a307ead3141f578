"""`d4c verify MANIFEST|RECORD`: rebuild, compare every artifact, exit 0 identical / 1 different."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from d4c.cli import main

DATASET = "ca_statcan_2021_population-density_provinces"


@pytest.fixture
def built(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    out = repo_copy / "out"
    assert main(["build", DATASET, "--out", str(out)]) == 0
    return out / "manifest.json"


def test_verify_manifest_identical(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["verify", str(built)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"identical  {DATASET}_v1.0.0_table.parquet  sha256:")
    assert out[1].startswith(f"identical  {DATASET}_v1.0.0_table-csv.csv  sha256:")
    assert out[-1] == f"{DATASET} v1.0.0: identical"


def test_verify_release_record_with_a_different_artifact(built: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads(built.read_text())
    manifest["outputs"][1]["sha256"] = "0" * 64  # as if the released CSV had other bytes
    from catalog_factory import make_record

    record = {**make_record(DATASET, "1.0.0"), "manifest": manifest}
    path = tmp_path / "1.0.0.json"
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("identical  ")
    assert out[1].startswith(f"DIFFERENT  {DATASET}_v1.0.0_table-csv.csv  expected sha256:{'0' * 64}, rebuilt sha256:")
    assert "(same rows and schema: encoding differs)" in out[1]
    assert out[-1] == f"{DATASET} v1.0.0: 1 artifact(s) differ"


def test_verify_refuses_a_changed_recipe_and_bad_files(built: Path, repo_copy: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    recipe = repo_copy / "datasets" / DATASET / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("density_decimals: 2", "density_decimals: 3"))
    assert main(["verify", str(built)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not the recipe this manifest was built from" in err[0]
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    assert main(["verify", str(bad)]) == 1
    assert "neither a build manifest nor a release record" in capsys.readouterr().err
    broken = json.loads(built.read_text())
    del broken["outputs"][0]["sha256"]
    bad.write_text(json.dumps(broken))
    assert main(["verify", str(bad)]) == 1
    assert "does not match schemas/manifest.schema.json at outputs/0: 'sha256' is a required property" in capsys.readouterr().err
