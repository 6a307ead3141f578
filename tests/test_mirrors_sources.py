"""`d4c mirrors check` checks the raw sources' mirrored copies too: a dataset whose sources
come from a web server the test starts is released to a moto S3 target and a local target,
both source mirrors. A deleted mirrored source fails the check with one line naming the
dataset, version, sha256 and mirror, and `d4c mirrors repair` puts it back; one with the
same size and other bytes passes tier 1 and fails the full hash (tier 3). A release with
no source mirror, a bundle made before mirrors.json and a hostile mirrors.json check
cleanly or give one warning line."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from d4c.cli import main
from d4c.mirrors import sources
from d4c.mirrors.checks import Context
from d4c.mirrors.inventory import Artifact, Copy, Version
from d4c.mirrors.net import Net
from d4c.mirrors.run import Options, check, failure_lines, write_report
from d4c.release.orchestrate import release
from test_any_mirror import DS, Origin, url_sourced_dataset
from test_release_support import (  # noqa: F401 - fixtures
    S3_ENV,
    MotoS3,
    build_in,
    demo_build,
    fresh_repo,
    local_target_yaml,
    moto_s3,
    s3_target_yaml,
    write_config,
)

DATE = "2026-12-02"
World = dict[str, Any]


@pytest.fixture(scope="module")
def built(demo_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Origin]]:
    """The URL-sourced dataset built once; each test releases a copy of it."""
    tmp = tmp_path_factory.mktemp("sources")
    root = fresh_repo(demo_build, tmp / "repo")
    served = tmp / "origin"
    served.mkdir()
    origin = Origin(served)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("D4C_REPO", str(root))
            mp.setenv("D4C_CACHE", str(tmp / "cache"))
            url_sourced_dataset(root, origin, served)
            build_in(root, DS)
        yield root, origin
    finally:
        origin.stop()


@pytest.fixture
def world(built: tuple[Path, Origin], moto_s3: MotoS3, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> World:
    root = shutil.copytree(built[0], tmp_path / "repo", symlinks=True)
    for k, v in {**S3_ENV, "D4C_REPO": str(root), "D4C_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(k, v)  # an empty cache: the release fetches the sources from the origin
    return {"root": root, "s3": moto_s3, "tmp": tmp_path, "origin": built[1]}


def released(w: World, source_mirror: bool = True) -> dict[str, Any]:
    bucket = w["s3"].bucket("src", public=True)
    cfg = write_config(w["tmp"] / "targets.yaml",
                       s3_target_yaml("sc", w["s3"].endpoint, bucket, source_mirror=source_mirror,
                                      layout="dataforcanada/{id}/v{version}/{file}"),
                       local_target_yaml("disk", w["tmp"] / "publish", source_mirror=source_mirror))
    rec = release(DS, targets_file=cfg, echo=lambda line: None)
    assert rec is not None
    w.update(bucket=bucket, cfg=cfg, catalog=str(w["root"] / ".d4c" / "catalog" / "catalog.parquet"))
    return rec


def checked(w: World, tier: int) -> tuple[dict[tuple[str, str, str], str], list[str]]:
    report = check(w["catalog"], Options(tier=tier, date=DATE, retries=0, backoff=0.01, scrape=False),
                   health_dir=w["tmp"] / "health")
    write_report(report, w["tmp"] / "health", tier)
    failing = {(str(r["role"]), str(r["mirror"]), str(r["sha256"])): str(r["status"])
               for r in report.failures}
    w["risk"] = [reason for risk in report.risk.values() for reason in risk.reasons]
    assert report.stats["source_copies"] == (4 if w.get("mirrored", True) else 0), report.stats
    return failing, failure_lines(report.rows)


def sc_key(rec: dict[str, Any]) -> tuple[str, str]:
    src = rec["sources"][0]
    return src["sha256"], src["urls"]["sc"].split("/", 4)[4]  # http://host/bucket/<key>


def test_a_deleted_mirrored_source_fails_the_check_and_repair_puts_it_back(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    rec = released(world)
    assert len(rec["sources"]) == 2 and all(set(s["urls"]) == {"sc", "disk"} for s in rec["sources"])
    assert checked(world, tier=1)[0] == {}
    sha, key = sc_key(rec)
    assert key == f"dataforcanada/sources/sha256/{sha[:2]}/{sha}"
    world["s3"].client().delete_object(Bucket=world["bucket"], Key=key)
    failing, lines = checked(world, tier=1)
    assert failing == {("raw-source", "sc", sha): "missing"}
    (line,) = lines
    assert line.startswith(f"raw source {rec['sources'][0]['name']} (sha256 {sha}) of {DS} v{rec['version']} "
                           f"on mirror sc ({rec['sources'][0]['urls']['sc']}): missing, tier 1 head: HTTP 404")
    assert f"upstream {world['origin'].url}/" in line and "`d4c mirrors repair`" in line
    assert f"raw source {rec['sources'][0]['name']} (source-{sha}): 1 of 2 mirrored copies pass" in world["risk"]
    assert main(["mirrors", "check", "--catalog", world["catalog"], "--date", DATE, "--tier", "1",
                 "--retries", "0", "--no-scrape", "--health-dir", str(world["tmp"] / "health"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"error: raw source {rec['sources'][0]['name']} (sha256 {sha})" in err
    assert main(["mirrors", "repair", "--targets", str(world["cfg"]),
                 "--health-dir", str(world["tmp"] / "health")]) == 0
    assert f"repaired sc: {key}" in capsys.readouterr().err
    body = world["s3"].client().get_object(Bucket=world["bucket"], Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha
    assert checked(world, tier=1)[0] == {}
    assert not [r for r in world["risk"] if r.startswith("raw source")]


def test_a_damaged_mirrored_source_fails_at_the_hashing_tier_and_comes_back_from_the_upstream(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    rec = released(world)
    sha, key = sc_key(rec)
    s3 = world["s3"].client()
    good = s3.get_object(Bucket=world["bucket"], Key=key)
    raw = bytearray(good["Body"].read())
    raw[len(raw) // 2] ^= 0xFF  # same size, other bytes, and our sha256 still in the metadata
    s3.put_object(Bucket=world["bucket"], Key=key, Body=bytes(raw), Metadata=good["Metadata"])
    # HEAD sees the right size and our sha256 metadata, but the ETag (the new bytes' md5) is not
    # the md5 d4c recorded at upload (the outsider's trial: this passed tiers 0-2).
    failing, lines = checked(world, tier=1)
    assert failing == {("raw-source", "sc", sha): "corrupt"}
    assert any("against the md5 d4c recorded" in ln for ln in lines), lines
    # A plain put with no metadata at all leaves nothing to compare: a visible skipped row.
    s3.put_object(Bucket=world["bucket"], Key=key, Body=bytes(raw))
    rows = check(world["catalog"], Options(tier=1, date=DATE, retries=0, backoff=0.01, scrape=False),
                 health_dir=world["tmp"] / "health").rows
    assert any(r["check"] == "checksum" and r["status"] == "skipped" and "no d4c metadata" in r["evidence"]
               for r in rows if r["role"] == "raw-source" and r["mirror"] == "sc"), rows
    disk = Path(unquote(urlsplit(rec["sources"][0]["urls"]["disk"]).path))
    disk.unlink()  # no good mirrored copy left: the repair must come from the upstream
    failing, lines = checked(world, tier=3)
    assert failing == {("raw-source", "sc", sha): "corrupt", ("raw-source", "disk", sha): "missing"}
    (line,) = [ln for ln in lines if "mirror sc" in ln]
    assert "corrupt, tier 3 sha256" in line and f"expected {len(raw)} with {sha}" in line
    assert main(["mirrors", "repair", "--targets", str(world["cfg"]),
                 "--health-dir", str(world["tmp"] / "health")]) == 0
    assert f"from {world['origin'].url}/" in capsys.readouterr().err  # the upstream, sha256 checked
    fixed = s3.get_object(Bucket=world["bucket"], Key=key)["Body"].read()
    assert hashlib.sha256(fixed).hexdigest() == sha == hashlib.sha256(disk.read_bytes()).hexdigest()
    assert checked(world, tier=3)[0] == {}


def test_a_release_without_source_mirrors_checks_cleanly(world: World) -> None:
    rec = released(world, source_mirror=False)
    assert all(not s["urls"] for s in rec["sources"])  # an old-style record: no source copies
    world["mirrored"] = False
    assert checked(world, tier=3) == ({}, [])


# -- the bundle's list, untrusted ----------------------------------------------------------

def bundle(tmp: Path, members: dict[str, bytes]) -> Version:
    """A catalog version with a bundle of these top-folder members and a data file on
    mirror sc (https://sc/): the mirrors a source copy may be on."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"x_v1.0.0_source/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp.mkdir(exist_ok=True)
    path = tmp / "x_v1.0.0_source.tar.gz"
    path.write_bytes(buf.getvalue())
    art = Artifact("x-1.0.0", "x", "1.0.0", "bundle", path.name, path.stat().st_size,
                   hashlib.sha256(buf.getvalue()).hexdigest(), ("source",),
                   [Copy("disk", path.as_uri())])
    table = Artifact("x-1.0.0", "x", "1.0.0", "data", "x.parquet", 1, "cd" * 32, ("data",),
                     [Copy("sc", "https://sc/x/v1.0.0/x.parquet")])
    return Version("x-1.0.0", "x", "1.0.0", "", [art, table])


SHA = "ab" * 32
MANIFEST = json.dumps({"sources": [{"name": "a", "sha256": SHA, "size": 3, "url": "https://up/a"}]}).encode()


def listed(tmp: Path, members: dict[str, bytes]) -> tuple[list[Artifact], str | None]:
    ctx = Context(Net(per_host=1, rate=0, retries=0), DATE, "2026-12-02T00:00:00Z")
    arts, warning = sources.listed(ctx, bundle(tmp, members))
    return arts, warning["evidence"] if warning else None


def mirrors(urls: dict[str, str], n: int = 1) -> bytes:
    return json.dumps({"mirrors_version": 1, "sources": [
        {"sha256": SHA if i == 0 else f"{i:064x}", "urls": urls} for i in range(n)]}).encode()


def test_an_old_bundle_lists_no_source_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    assert listed(tmp_path, {"manifest.json": MANIFEST}) == ([], None)


def test_a_hostile_mirrors_list_is_one_line_and_fetches_nothing_odd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    arts, why = listed(tmp_path, {"manifest.json": MANIFEST, "mirrors.json": mirrors(
        {"sc": f"https://sc/{SHA}", "evil": f"gopher://x/{SHA}", "disk": "file:///etc/passwd",
         "ia": "https://ia/a", "BAD NAME": f"https://y/{SHA}"})})
    assert [c.href for a in arts for c in a.copies] == [f"https://sc/{SHA}"]
    assert why and why.startswith("4 entries of the bundle's mirrors.json left out") and "\n" not in why
    assert listed(tmp_path, {"manifest.json": MANIFEST, "mirrors.json": mirrors({"sc": f"https://sc/{SHA}"},
                                                                                 n=10_001)})[0] == []
    monkeypatch.setattr(sources, "MAX_MEMBER", 1000)  # a mirrors.json over the cap is said, not skipped
    assert listed(tmp_path, {"manifest.json": MANIFEST, "mirrors.json": b" " * 1001})[1] == (
        "the source list of the bundle is unusable: its bundle's mirrors.json is over 1000 bytes")
    for doc in (b"[" * 100_000, b"{\"mirrors_version\": 1, \"sources\": 7}", b"\xff\xfe"):
        arts, why = listed(tmp_path, {"manifest.json": MANIFEST, "mirrors.json": doc})
        assert arts == [] and why and why.startswith("the source list of the bundle is unusable"), why


def test_a_source_copy_shared_by_versions_is_checked_once_and_given_to_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    ctx = Context(Net(per_host=1, rate=0, retries=0), DATE, "2026-12-02T00:00:00Z")
    members = {"manifest.json": MANIFEST, "mirrors.json": mirrors({"sc": f"https://sc/{SHA}"})}
    one, two = bundle(tmp_path / "a", members), bundle(tmp_path / "b", members)
    two.item_id = two.artifacts[0].item_id = "x-1.0.1"
    two.version = two.artifacts[0].version = "1.0.1"
    with ThreadPoolExecutor(2) as pool:
        found = sources.jobs(ctx, [one, two], pool)
    assert [(v.item_id, c.href) for v, _, c in found.work] == [("x-1.0.0", f"https://sc/{SHA}")]
    first = {"item_id": "x-1.0.0", "asset": f"source-{SHA}", "href": f"https://sc/{SHA}", "status": "missing"}
    (given,) = sources.given([first], found.shared)
    assert (given["item_id"], given["version"], given["status"]) == ("x-1.0.1", "1.0.1", "missing")


def test_a_github_release_asset_is_not_taken_for_an_internet_archive_file() -> None:
    """`.../releases/download/<id>/v<version>/source-<sha256>` has `/download/` in it: it was
    looked up in an IA metadata listing the GitHub host does not have, so every GitHub copy
    (a mirrored source's too) was `missing`."""
    from d4c.mirrors.checks import ServiceChecksums

    net = Net(per_host=1, rate=0, retries=0)
    gh = f"https://github.com/dataforcanada/d4c/releases/download/ca_x/v1.0.0/source-{SHA}"
    assert ServiceChecksums(net).lookup(gh) is None and not net.requests  # no request either
    from d4c.mirrors.checks import _IA

    found = _IA.match(f"https://archive.org/download/ca_x_v1.0.0/source-{SHA}")
    assert found and (found["base"], found["ident"]) == ("https://archive.org", "ca_x_v1.0.0")


@pytest.mark.parametrize(("status", "fix"), [
    ("missing", "restore it with `d4c mirrors repair`"),
    ("corrupt", "restore it with `d4c mirrors repair`"),
    ("refused", "fix the mirror's read policy"),
    ("changed", "hash it with `d4c mirrors check --tier 3`")])
def test_a_failing_source_copys_line_names_the_fix_that_applies(status: str, fix: str) -> None:
    """Repair leaves a refused copy (a policy) and a changed one (hash it first): the line
    told the operator to repair both (the outsider's trial)."""
    r = {"tier": 1, "status": status, "check": "head", "role": sources.ROLE, "file": "pop.csv",
         "sha256": "ab" * 32, "collection": "ca_x", "version": "1.0.0", "item_id": "ca_x-1.0.0",
         "asset": "source-" + "ab" * 32, "mirror": "sc", "href": "https://x/ab", "evidence": "HTTP 403"}
    (line,) = failure_lines([r])
    assert fix in line, line
