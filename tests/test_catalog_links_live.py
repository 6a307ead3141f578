"""After three real releases to a keep-everything mirror (Source-Cooperative-style) and a
`retain: latest` one (the object store's processed/), every href and alternate in the
catalog answers an anonymous request, and each old version's main href is on the mirror
that keeps it. Real builds, moto over HTTP, no credentials on the reads."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from d4c.release.orchestrate import release
from test_release_support import (  # noqa: F401 - fixtures
    DEMO,
    S3_ENV,
    MotoS3,
    build_in,
    demo_build,
    fresh_repo,
    moto_s3,
    s3_target_yaml,
    write_config,
)

VERSIONS = ("1.0.0", "1.1.0", "1.2.0")


def bump(root: Path, version: str) -> None:
    recipe = root / "datasets" / DEMO / "recipe.yaml"
    text = recipe.read_text()
    old = next(line for line in text.splitlines() if line.startswith("version: "))
    recipe.write_text(text.replace(old, f"version: {version}", 1))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "commit", "-q", "-am", f"v{version}"], cwd=root, check=True)


def hrefs(asset: dict[str, Any]) -> list[str]:
    return [asset["href"], *(a["href"] for a in (asset.get("alternate") or {}).values())]


def test_three_versions_keep_every_catalog_link_alive(
        demo_build: Path, moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fresh_repo(demo_build, tmp_path / "repo")
    for k, v in {**S3_ENV, "D4C_REPO": str(root)}.items():
        monkeypatch.setenv(k, v)
    sc = moto_s3.bucket("sc", public=("dataforcanada/", "catalog/"))
    dfc = moto_s3.bucket("dfc", public=("processed/",))
    cfg = write_config(
        tmp_path / "targets.yaml",
        s3_target_yaml("sc", moto_s3.endpoint, sc, source_mirror=True,
                       layout="dataforcanada/{id}/v{version}/{file}"),
        s3_target_yaml("dfc", moto_s3.endpoint, dfc, retain="latest", layout="processed/{id}/{file}"),
        top="catalog: {target: sc}\n")
    for version in VERSIONS:
        if version != VERSIONS[0]:
            bump(root, version)
        build_in(root, DEMO)
        assert release(DEMO, targets_file=cfg, echo=lambda line: None) is not None
    catalog = tmp_path / "catalog.parquet"
    catalog.write_bytes(requests.get(f"{moto_s3.endpoint}/{sc}/catalog/catalog.parquet", timeout=10).content)
    rows = pq.read_table(catalog).to_pylist()
    assert sorted(r["version"] for r in rows) == sorted(VERSIONS)
    checked = 0
    for row in rows:
        latest = row["version"] == VERSIONS[-1]
        for asset in row["assets"].values():
            asset = {k: v for k, v in asset.items() if v is not None}
            if not latest:  # the main copy is one kept for this version, never processed/
                assert f"/{sc}/dataforcanada/" in asset["href"], (row["version"], asset["href"])
            named = hrefs({**asset, "alternate": {k: a for k, a in (asset.get("alternate") or {}).items() if a}})
            assert latest or not any(f"/{dfc}/" in h for h in named), (row["version"], named)
            assert latest or all(f"s3://{dfc}/" not in h for h in named)
            if "data" in asset["roles"]:
                assert any(h.startswith(f"s3://{sc}/dataforcanada/") for h in named), named
            for href in (h for h in named if h.startswith("http")):
                resp = requests.head(href, timeout=10)  # anonymous
                assert resp.status_code == 200, (row["version"], href, resp.status_code)
                checked += 1
    latest_row = next(r for r in rows if r["version"] == VERSIONS[-1])
    assert any(f"/{dfc}/" in h for a in latest_row["assets"].values() if a for h in hrefs(
        {**a, "alternate": {k: v for k, v in (a.get("alternate") or {}).items() if v}}))
    assert checked > 20
