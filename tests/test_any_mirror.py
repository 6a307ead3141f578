"""Any one mirror is enough: a dataset whose sources come from a web server is released to
two S3 targets (moto over HTTP: one Source-Cooperative-style keeping every version under
`dataforcanada/`, one `retain: latest`), Zenodo, the Internet Archive and GitHub (fakes),
every one of them a source mirror. Then the web server stops, and with each mirror alone
and an empty cache, `d4c verify` rebuilds from the record (outside any checkout: the
bundle comes from that mirror too) and from the bundle: identical every time. The torrent
fetches through its web seeds alone."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from d4c.cli import main
from d4c.release.orchestrate import release
from fakes.github import FakeGitHub
from fakes.internet_archive import FakeInternetArchive
from fakes.zenodo import FakeZenodo
from test_release_support import (  # noqa: F401 - fixtures
    S3_ENV,
    MotoS3,
    build_in,
    demo_build,
    fresh_repo,
    moto_s3,
    s3_target_yaml,
    write_config,
)

DS = "ca_test_mirrored"
TEMPLATE = "ca_statcan_2021_population-density_provinces"
ENV = {"ZENODO_TOKEN": "zen-token", "GITHUB_TOKEN": "gh-token", "IA_ACCESS_KEY": "ia-a",
       "IA_SECRET_KEY": "ia-s", **S3_ENV}
MIRRORS = ("sc", "dfc", "zenodo", "ia", "github")


class Origin:
    """The publisher's web server: the only place the recipe says the sources are."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None  # type: ignore[attr-defined]
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def url_sourced_dataset(root: Path, origin: Origin, served: Path) -> None:
    """The template dataset with its sources moved from git to the origin server."""
    folder = root / "datasets" / DS
    shutil.copytree(root / "datasets" / TEMPLATE, folder)
    text = (folder / "recipe.yaml").read_text().replace(f"id: {TEMPLATE}", f"id: {DS}")
    for src in sorted((folder / "sources").iterdir()):
        shutil.copy(src, served / src.name)
        text = text.replace(f"path: sources/{src.name}", f"url: {origin.url}/{src.name}")
    shutil.rmtree(folder / "sources")
    (folder / "recipe.yaml").write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    env = {"GIT_AUTHOR_DATE": "2026-02-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-02-01T00:00:00Z"}
    subprocess.run([*git, "commit", "-q", "-m", "url-sourced"], cwd=root, check=True,
                   env={**os.environ, **env})


def services_yaml(zen: FakeZenodo, ia: FakeInternetArchive, gh: FakeGitHub) -> list[str]:
    zenodo = (f"  - name: zenodo\n    kind: zenodo\n    source_mirror: true\n"
              f"    credentials: {{token: ZENODO_TOKEN}}\n"
              f"    options: {{base_url: \"{zen.url}\", index_lag_seconds: 0.1}}\n")
    archive = (f"  - name: ia\n    kind: internet-archive\n    source_mirror: true\n"
               f"    credentials: {{access: IA_ACCESS_KEY, secret: IA_SECRET_KEY}}\n"
               f"    options: {{s3_url: \"{ia.url}\", archive_url: \"{ia.url}\", settle_seconds: 5}}\n")
    github = (f"  - name: github\n    kind: github\n    source_mirror: true\n"
              f"    credentials: {{token: GITHUB_TOKEN}}\n"
              f"    options: {{repo: dataforcanada/d4c, api_url: \"{gh.url}\", web_url: \"{gh.url}\"}}\n")
    return [zenodo, archive, github]


@pytest.fixture
def released(demo_build: Path, moto_s3: MotoS3, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[dict[str, Any], Path, dict[str, Any]]]:
    root = fresh_repo(demo_build, tmp_path / "repo")
    for k, v in {**ENV, "D4C_REPO": str(root), "D4C_CACHE": str(tmp_path / "cache-0")}.items():
        monkeypatch.setenv(k, v)
    served = tmp_path / "origin"
    served.mkdir()
    origin = Origin(served)
    fakes = (FakeZenodo(ENV["ZENODO_TOKEN"]), FakeInternetArchive(ENV["IA_ACCESS_KEY"], ENV["IA_SECRET_KEY"]),
             FakeGitHub(ENV["GITHUB_TOKEN"]))
    for fake in fakes:
        fake.start()
    try:
        url_sourced_dataset(root, origin, served)
        sc, dfc = (moto_s3.bucket(name, public=("dataforcanada/",)) for name in ("sc", "dfc"))
        cfg = write_config(
            tmp_path / "targets.yaml",
            s3_target_yaml("sc", moto_s3.endpoint, sc, source_mirror=True,
                           layout="dataforcanada/{id}/v{version}/{file}"),
            s3_target_yaml("dfc", moto_s3.endpoint, dfc, retain="latest", source_mirror=True,
                           layout="dataforcanada/{id}/processed/{file}"),
            *services_yaml(*fakes))
        build_in(root, DS)
        rec = release(DS, targets_file=cfg, echo=lambda line: None)
        assert rec is not None
        yield rec, root, {"s3": moto_s3, "buckets": {"sc": sc, "dfc": dfc}, "fakes": fakes}
    finally:
        origin.stop()  # (again, for a failure before the test stopped it)
        for fake in fakes:
            fake.stop()


def only(world: dict[str, Any], keep: str) -> None:
    """Every copy but `keep`'s is gone: the other buckets emptied, the services down."""
    s3: MotoS3 = world["s3"]
    for name, bucket in world["buckets"].items():
        if name != keep:
            for key in s3.keys(bucket):
                s3.client().delete_object(Bucket=bucket, Key=key)
    for name, fake in zip(("zenodo", "ia", "github"), world["fakes"], strict=True):
        if name != keep:
            fake.stop()


def fetch(url: str, dest: Path) -> Path:
    import requests

    resp = requests.get(url, timeout=30)
    resp.raise_for_status()
    dest.write_bytes(resp.content)
    return dest


@pytest.mark.parametrize("mirror", MIRRORS)
def test_each_mirror_alone_rebuilds_the_release(
        mirror: str, released: tuple[dict[str, Any], Path, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rec, root, world = released
    assert all(set(s["urls"]) == set(MIRRORS) for s in rec["sources"]), rec["sources"]
    record = tmp_path / "record.json"
    shutil.copy(root / "releases" / DS / "1.0.0.json", record)
    bundle_file = next(f for f in rec["files"] if f["role"] == "bundle")
    bundle = fetch(bundle_file["urls"][mirror], tmp_path / bundle_file["file"])
    assert hashlib.sha256(bundle.read_bytes()).hexdigest() == bundle_file["sha256"]
    only(world, mirror)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.delenv("D4C_REPO")
    runs = [["verify", str(record), "--mirror", mirror], ["verify", str(bundle), "--mirror", mirror]]
    for n, argv in enumerate(runs):
        monkeypatch.setenv("D4C_CACHE", str(tmp_path / f"cache-{mirror}-{n}"))  # nothing cached
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 0, (argv, out, err)
        assert out.strip().splitlines()[-1] == f"{DS} v1.0.0: identical", out
        assert out.count("identical  ") == 2  # both artifacts


def test_the_bundle_says_how_to_rebuild_and_where_the_sources_are(
        released: tuple[dict[str, Any], Path, dict[str, Any]], tmp_path: Path) -> None:
    from d4c.release.bundle import extract_bundle

    rec, _, _ = released
    bundle_file = next(f for f in rec["files"] if f["role"] == "bundle")
    top = extract_bundle(Path(fetch(bundle_file["urls"]["sc"], tmp_path / bundle_file["file"])), tmp_path / "x")
    readme = (top / "README.md").read_text()
    assert f"d4c verify {DS}_v1.0.0_source.tar.gz --runner container" in readme
    listed = json.loads((top / "mirrors.json").read_text())
    by_sha = {s["sha256"]: s["urls"] for s in listed["sources"]}
    for s in rec["sources"]:
        # every mirror whose URL the config fixes; Zenodo's record id comes later (the record has it)
        assert by_sha[s["sha256"]] == {k: v for k, v in s["urls"].items() if k != "zenodo"}
        assert s["sha256"] in readme and s["urls"]["sc"] in readme
    # ...and that list is what `d4c mirrors check` checks the sources' copies by: every copy
    # on the five mirrors passes, the GitHub ones too (once taken for Internet Archive files)
    from d4c.mirrors.run import Options, check, failure_lines

    report = check(str(released[1] / ".d4c" / "catalog" / "catalog.parquet"),
                   Options(tier=3, date="2026-12-02", retries=0, backoff=0.01, scrape=False))
    assert failure_lines(report.rows) == []
    assert report.stats["source_copies"] == 4 * len(rec["sources"])  # sc, dfc, ia, github


def test_the_torrent_fetches_from_its_web_seeds(
        require_tool: Callable[..., str], released: tuple[dict[str, Any], Path, dict[str, Any]],
        tmp_path: Path) -> None:
    aria2c = require_tool("aria2c")
    rec, _, _ = released
    for tor in rec["torrents"]:
        art = next(f for f in rec["files"] if f["role"] == "data" and f["file"] == tor["file"])
        meta = next(f for f in rec["files"] if f["file"] == tor["file"] + ".torrent")
        tfile = fetch(meta["urls"]["sc"], tmp_path / meta["file"])
        out = tmp_path / "dl"
        subprocess.run([aria2c, "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                        "--enable-peer-exchange=false", "--seed-time=0", "--console-log-level=warn",
                        "--summary-interval=0", "--allow-overwrite=true", f"--dir={out}",
                        f"--torrent-file={tfile}"], check=False, capture_output=True, timeout=45)
        got = out / tor["file"]
        assert got.is_file() and hashlib.sha256(got.read_bytes()).hexdigest() == art["sha256"]


def test_a_catalog_item_url_is_enough(released: tuple[dict[str, Any], Path, dict[str, Any]],
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The item a catalog holds for the version, fetched by URL: its bundle asset and the
    bundle's mirrors.json lead to everything else (here the Internet Archive's copies)."""
    from d4c.catalog.items import record_to_item

    rec, _, world = released
    item = record_to_item(rec, rec["metadata"])
    served = tmp_path / "stac"
    served.mkdir()
    (served / "item.json").write_text(json.dumps(item))
    site = Origin(served)
    try:
        only(world, "ia")
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("D4C_REPO")
        monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache-item"))
        capsys.readouterr()
        assert main(["verify", f"{site.url}/item.json", "--mirror", "ia"]) == 0, capsys.readouterr()
        assert capsys.readouterr().out.strip().endswith(f"{DS} v1.0.0: identical")
    finally:
        site.stop()


def test_one_mirror_without_the_sources_fails_though_the_cache_holds_them(
        released: tuple[dict[str, Any], Path, dict[str, Any]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`--mirror` reads that mirror's copies, not the source cache the build warmed."""
    _, root, world = released
    only(world, "sc")
    s3: MotoS3 = world["s3"]
    sources = [k for k in s3.keys(world["buckets"]["sc"]) if "/sources/" in k]
    assert sources
    for key in sources:
        s3.client().delete_object(Bucket=world["buckets"]["sc"], Key=key)
    record = root / "releases" / DS / "1.0.0.json"
    capsys.readouterr()
    code = main(["verify", str(record), "--mirror", "sc"])
    out, err = capsys.readouterr()
    assert code != 0 and "identical" not in out.splitlines()[-1:], (out, err)
    assert "no verified copy" in err, err
