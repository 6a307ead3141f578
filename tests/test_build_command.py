"""Command transforms (for GDAL and other CLIs) get sources, outputs and params by environment."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import missing_tool
from d4c.cli import main

TEMPLATE = "ca_statcan_2021_population-density_provinces"
SCRIPT = '''import json, os, sys
import pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
params = json.loads(os.environ["D4C_PARAMS"])
table = pacsv.read_csv(os.environ["D4C_SOURCE_POPULATION"])
table = table.append_column("decimals", pa.array([params["density_decimals"]] * table.num_rows))
pq.write_table(table, os.environ["D4C_OUTPUT_TABLE"])
pacsv.write_csv(table, os.environ["D4C_OUTPUT_TABLE_CSV"])
if len(sys.argv) > 1:
    open(sys.argv[1], "w").write("escaped")
'''


def add_command_dataset(repo: Path, name: str, extra_arg: str = "") -> str:
    dataset_id = f"ca_test_{name}"
    folder = repo / "datasets" / dataset_id
    shutil.copytree(repo / "datasets" / TEMPLATE, folder)
    recipe = folder / "recipe.yaml"
    argv = ["python", "./make.py", *([extra_arg] if extra_arg else [])]
    text = recipe.read_text().replace(f"id: {TEMPLATE}", f"id: {dataset_id}")
    recipe.write_text(text.replace("  python: transform.py:build", f"  command: {json.dumps(argv)}"))
    (folder / "transform.py").unlink()
    (folder / "make.py").write_text(SCRIPT)
    return dataset_id


def test_command_transform_builds(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    ds = add_command_dataset(repo_copy, "command")
    out = repo_copy / "out"
    assert main(["build", ds, "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [o["rows"] for o in manifest["outputs"]] == [13, 13]
    assert manifest["outputs"][0]["columns"][-1] == {"name": "decimals", "type": "int64", "nulls": 0}


def test_command_transform_cannot_write_outside(repo_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    if not shutil.which("bwrap"):
        missing_tool("a read-only file system for child processes needs bubblewrap (bwrap)")
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    leak = repo_copy / "leak.txt"
    ds = add_command_dataset(repo_copy, "command-leak", str(leak))
    assert main(["build", ds, "--out", str(repo_copy / "out")]) == 1
    err = capfd.readouterr().err
    # The repository is not even there: the host's paths do not exist in the sandbox.
    assert "No such file or directory" in err and "transform command" in err and "exited with status 1" in err
    assert not leak.exists() and not (repo_copy / "out").exists()


def test_outside_git_source_date_epoch_comes_from_the_environment(
        repo_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"  # the same files with no .git: e.g. an unpacked tarball
    shutil.copytree(repo_copy, plain, ignore=shutil.ignore_patterns(".git"))
    monkeypatch.setenv("D4C_REPO", str(plain))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    out = plain / "out"
    assert main(["build", TEMPLATE, "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["source_date_epoch"] == 1700000000
