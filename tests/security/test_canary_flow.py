"""A canary in every credential variable through build, release and verify, with a thief transform.

The transform reads everything a credential could hide in (every /proc/*/environ it can
see, its own environment, ~/.aws, ~/.netrc, the repository's .git/config) and writes all
of it into its own outputs, which then get released and verified. The canary must appear
in no output, file, artifact or log; and the thief must really have run (its marker is in
the released artifact).
"""
from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from d4c.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_release_support import local_target_yaml, write_config

TEMPLATE = "ca_statcan_2021_population-density_provinces"
DATASET = "ca_test_canary-thief"
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ZENODO_TOKEN",
               "GITHUB_TOKEN", "GH_TOKEN", "IA_ACCESS_KEY", "IA_SECRET_KEY", "D4C_TEST_S3_KEY",
               "D4C_TEST_S3_SECRET", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "ACTIONS_RUNTIME_TOKEN")
THIEF = '''import glob, os
import pandas as pd

def build(ctx):
    loot = ["THIEF-RAN"]
    for path in [*glob.glob("/proc/*/environ"), "/proc/self/environ", "/proc/1/environ"]:
        try:
            loot.append(open(path, "rb").read().decode("latin-1"))
        except OSError as exc:
            loot.append(f"{path}: {exc.__class__.__name__}")
    loot.append(repr(dict(os.environ)))
    for path in ("~/.aws/credentials", "~/.netrc", "HOSTHOME/.aws/credentials", "REPO/.git/config"):
        try:
            loot.append(open(os.path.expanduser(path)).read())
        except OSError as exc:
            loot.append(f"{path}: {exc.__class__.__name__}")
    population = pd.read_csv(ctx.source("population"))
    population["loot"] = "\\n".join(loot)
    ctx.write_parquet("table", population)
    ctx.write_csv("table-csv", population)
'''


def _commit(repo: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "thief"], cwd=repo, check=True)


def test_canary_in_every_credential_reaches_nothing(repo_copy: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    canary = "CANARY" + secrets.token_hex(8)  # made at run time: no file holds a copy beforehand
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {canary}-aws-file\n")
    (home / ".netrc").write_text(f"machine zenodo.org login x password {canary}-netrc\n")
    (repo_copy / ".git" / "config").write_text(
        (repo_copy / ".git" / "config").read_text() + f"[d4c]\n\ttoken = {canary}-git\n")
    folder = repo_copy / "datasets" / DATASET
    subprocess.run(["cp", "-r", str(repo_copy / "datasets" / TEMPLATE), str(folder)], check=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(f"id: {TEMPLATE}", f"id: {DATASET}"))
    (folder / "transform.py").write_text(THIEF.replace("HOSTHOME", str(home)).replace("REPO", str(repo_copy)))
    _commit(repo_copy)
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    monkeypatch.setenv("HOME", str(home))
    for name in CREDENTIALS:
        monkeypatch.setenv(name, f"{canary}-{name}")
    publish = tmp_path / "publish"
    config = write_config(tmp_path / "targets.yaml", local_target_yaml("local", publish))

    assert main(["build", DATASET]) == 0
    assert main(["release", DATASET, "--targets", str(config)]) == 0
    record = repo_copy / "releases" / DATASET / "1.0.0.json"
    assert main(["verify", str(record)]) == 0
    out, err = capfd.readouterr()

    artifact = next(publish.rglob(f"{DATASET}_v1.0.0_table.parquet"))
    loot = pq.read_table(artifact).column("loot")[0].as_py()
    assert loot.startswith("THIEF-RAN") and "SOURCE_DATE_EPOCH" in loot  # it ran, and read what it could
    assert canary not in out and canary not in err
    scanned = 0
    for top in (repo_copy, tmp_path, publish):
        for path in top.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.parts[-2:] != (".aws", "credentials") \
                    and path.name != ".netrc" and path != repo_copy / ".git" / "config":
                scanned += 1
                assert canary.encode() not in path.read_bytes(), path
    assert scanned > 20
