"""What `d4c mirrors repair` never writes, whatever the catalog says (d4c.mirrors.repair_guard):
a dataset really released to a moto S3 target and a local target, then hostile catalog items
next to it. A twin item with the real file's key and its own sha256 and a "good" copy on its
own server, a version listing a new raw source served by that server, a version under a
takedown and a sha256 that is a path: each is one `left:` line, exit 1, and the real bytes stay."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import copy
import functools
import hashlib
import io
import json
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from d4c.catalog.writer import items_to_table, table_to_items
from d4c.cli import main
from d4c.mirrors import health
from d4c.mirrors.run import Options, check, write_report
from test_mirrors_sources import DATE, World, built, released, sc_key, world  # noqa: F401
from test_release_support import demo_build, moto_s3  # noqa: F401


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def host(tmp_path: Path) -> Any:
    """The attacker's web server: serves a folder."""
    folder = tmp_path / "evilhost"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def with_items(w: World, items: list[dict[str, Any]]) -> None:
    out = w["tmp"] / "hostile_catalog.parquet"
    pq.write_table(items_to_table(items), out)
    w["catalog"] = str(out)


def check_and_repair(w: World, capsys: pytest.CaptureFixture[str], tier: int = 1) -> tuple[int, str]:
    report = check(w["catalog"], Options(tier=tier, date=DATE, retries=0, backoff=0.01, scrape=False),
                   health_dir=w["tmp"] / "health")
    write_report(report, w["tmp"] / "health", tier)
    capsys.readouterr()
    rc = main(["mirrors", "repair", "--targets", str(w["cfg"]), "--health-dir", str(w["tmp"] / "health")])
    return rc, capsys.readouterr().err


def real_and_twin(w: World, host: Any) -> tuple[dict[str, Any], dict[str, Any], str, Path]:
    """The real item, and a twin with another id and the real item's files, but whose data
    asset has the attacker's sha256, with a "good" copy on the attacker's server."""
    (good,) = table_to_items(pq.read_table(w["catalog"]))
    evil = copy.deepcopy(good)
    evil["id"] = "aaa-evil-1"
    key = next(k for k, a in evil["assets"].items() if "data" in (a.get("roles") or ()))
    a = evil["assets"][key]  # its other files are the real ones: it passes as released here
    payload = b"attacker replacement of the data file\n"
    (host[0] / "p").write_bytes(payload)
    a.update({"file:size": len(payload), "file:checksum": "1220" + hashlib.sha256(payload).hexdigest()})
    a["alternate"] = {n: x for n, x in a["alternate"].items() if n != "torrent"} | {"zz": {"href": f"{host[1]}/p"}}
    local = Path(a["alternate"]["disk"]["href"].removeprefix("file://"))
    return good, evil, a["href"].split("/", 4)[4], local


def test_a_twin_item_never_overwrites_the_real_file_on_s3_or_local(
        world: World, host: Any, capsys: pytest.CaptureFixture[str]) -> None:
    released(world)
    good, evil, key, local = real_and_twin(world, host)
    real = local.read_bytes()
    s3 = world["s3"].client()
    with_items(world, [good, evil])  # both rows name one key with different sha256s
    rc, err = check_and_repair(world, capsys)
    assert rc == 1 and "repaired 0 copies" in err, err
    clash = [ln for ln in err.splitlines() if "resolve to this key with different sha256s" in ln]
    assert len(clash) == 2 and all("aaa-evil-1" in ln and good["id"] in ln for ln in clash), err
    assert s3.get_object(Bucket=world["bucket"], Key=key)["Body"].read() == real
    assert local.read_bytes() == real
    with_items(world, [evil])  # the real item gone from the catalog: the s3 record still says
    rc, err = check_and_repair(world, capsys)
    sha = hashlib.sha256(real).hexdigest()
    assert rc == 1 and "repaired 0 copies" in err, err
    refused = [ln for ln in err.splitlines() if f"holds a good copy of sha256 {sha}" in ln]
    assert len(refused) == 2 and {"'sc'", "'disk'"} <= {w for ln in refused for w in ln.split()}, err
    assert s3.get_object(Bucket=world["bucket"], Key=key)["Body"].read() == real
    assert local.read_bytes() == real
    assert "Traceback" not in err
    # a recorded sha256 the bytes do not match is a damaged copy: repaired (the same health file)
    s3.put_object(Bucket=world["bucket"], Key=key, Body=b"rot", Metadata={"sha256": sha})
    assert main(["mirrors", "repair", "--targets", str(world["cfg"]),
                 "--health-dir", str(world["tmp"] / "health")]) == 1
    err = capsys.readouterr().err
    assert "repaired sc: " in err and "repaired 1 copy from" in err, err
    assert local.read_bytes() == real  # still the real file: the s3 record said so


def bundle_item(w: World, good: dict[str, Any], sources: list[dict[str, Any]],
                urls: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Another version whose source bundle (off every target) lists these raw sources."""
    evil = copy.deepcopy(good)
    evil["id"], evil["properties"]["version"] = "aaa-evil-0.0.1", "0.0.1"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, doc in (("manifest.json", {"sources": sources}),
                          ("mirrors.json", {"mirrors_version": 1, "sources": [
                              {"sha256": s, "urls": u} for s, u in urls.items()]})):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(f"evil/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = w["tmp"] / "evil_source.tar.gz"
    path.write_bytes(buf.getvalue())
    key = next(k for k, a in evil["assets"].items() if "source" in (a.get("roles") or ()))
    evil["assets"][key].update({"href": path.as_uri(), "d4c:mirror": "disk", "alternate": {},
                                "file:size": path.stat().st_size,
                                "file:checksum": "1220" + hashlib.sha256(buf.getvalue()).hexdigest()})
    return evil


def new_version(good: dict[str, Any], host: Any) -> dict[str, Any]:
    """A version never released, whose data file's copies on our targets are at the keys their
    layouts give (absent, so `missing`) and whose "good" copy is on the attacker's server."""
    fresh = copy.deepcopy(good)
    fresh["id"], fresh["properties"]["version"] = "aaa-new-9.9.9", "9.9.9"
    key = next(k for k, a in fresh["assets"].items() if "data" in (a.get("roles") or ()))
    fresh["assets"] = {key: fresh["assets"][key]}
    asset = fresh["assets"][key]
    payload = b"<script>hosted on your bucket</script>\n"
    (host[0] / "q").write_bytes(payload)
    asset.update({"href": asset["href"].replace("/v1.0.0/", "/v9.9.9/"), "file:size": len(payload),
                  "file:checksum": "1220" + hashlib.sha256(payload).hexdigest(),
                  "alternate": {"zz": {"href": f"{host[1]}/q"}, "disk": {
                      "href": asset["alternate"]["disk"]["href"].replace("/v1.0.0/", "/v9.9.9/")}}})
    return fresh


def test_a_raw_source_listed_only_by_a_version_released_elsewhere_is_not_planted(
        world: World, host: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rec = released(world)
    (good,) = table_to_items(pq.read_table(world["catalog"]))
    payload = b"<html>attacker content hosted on your bucket</html>\n"
    esha = hashlib.sha256(payload).hexdigest()
    (host[0] / esha).write_bytes(payload)
    real_sha, real_key = sc_key(rec)
    sc_url = rec["sources"][0]["urls"]["sc"].replace(real_sha, esha).replace(f"/{real_sha[:2]}/", f"/{esha[:2]}/")
    listed = [{"name": "x.csv", "sha256": esha, "size": len(payload), "url": f"{host[1]}/{esha}"},
              {"name": "tiny", "sha256": real_sha, "size": 1, "url": f"{host[1]}/none"}]  # a twin
    evil = bundle_item(world, good, listed,
                       {esha: {"sc": sc_url}, real_sha: {"sc": rec["sources"][0]["urls"]["sc"]}})
    manifest = json.dumps({"sources": listed}).encode()  # its manifest: x.csv's "upstream" is the host
    (host[0] / "manifest.json").write_bytes(manifest)
    evil["assets"]["manifest"].update({"href": f"{host[1]}/manifest.json", "alternate": {},
                                       "file:size": len(manifest),
                                       "file:checksum": "1220" + hashlib.sha256(manifest).hexdigest()})
    fresh = new_version(good, host)
    with_items(world, [evil, fresh, good])
    world["s3"].client().delete_object(Bucket=world["bucket"], Key=real_key)  # a real loss
    rc, err = check_and_repair(world, capsys, tier=2)  # tier 2: the upstream rows, a good copy
    assert rc == 1 and "repaired 1 copy from" in err and f"repaired sc: {real_key}" in err, err
    (left,) = [ln for ln in err.splitlines() if "x.csv" in ln]
    assert "aaa-evil-0.0.1's source bundle passed on no local or s3 target" in left
    listed = world["s3"].client().list_objects_v2(Bucket=world["bucket"], Prefix=sc_url.split("/", 4)[4])
    assert listed.get("KeyCount") == 0  # nothing planted
    body = world["s3"].client().get_object(Bucket=world["bucket"], Key=real_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == real_sha  # the hostile twin's size 1 blocked nothing
    planted = [ln for ln in err.splitlines() if "no file of item aaa-new-9.9.9 passed" in ln]
    assert len(planted) == 2, err  # sc and disk: a version never released there
    assert not (world["tmp"] / "publish" / "ca_test_mirrored" / "v9.9.9").exists()
    fresh_prefix = "dataforcanada/ca_test_mirrored/v9.9.9/"
    assert world["s3"].client().list_objects_v2(Bucket=world["bucket"], Prefix=fresh_prefix)["KeyCount"] == 0


def test_a_takedown_is_not_undone_and_a_sha256_that_is_a_path_names_no_file(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    released(world)
    (good,) = table_to_items(pq.read_table(world["catalog"]))
    good["properties"].update({"d4c:retention_until": "2026-11-30", "d4c:retention_reason": "takedown T-1"})
    with_items(world, [good])
    key = next(a["href"] for a in good["assets"].values() if "data" in a["roles"]).split("/", 4)[4]
    world["s3"].client().delete_object(Bucket=world["bucket"], Key=key)  # the takedown, done
    rc, err = check_and_repair(world, capsys)
    assert rc == 1 and "repaired 0 copies" in err, err
    (line,) = [ln for ln in err.splitlines() if "left:" in ln]
    assert "records retention passed 2026-11-30: takedown T-1: not restored" in line
    listed = world["s3"].client().list_objects_v2(Bucket=world["bucket"], Prefix=key)
    assert key not in [o["Key"] for o in listed.get("Contents", [])]  # not put back
    # a health file that names a path for a sha256 (the check drops such rows; repair still refuses)
    latest = world["tmp"] / "health" / f"{DATE}.parquet"
    rows = health.read(latest)
    victim = world["tmp"] / "victim.part"
    victim.write_text("precious\n")
    for r in rows:
        if r["check"] == "retention":
            r["check"] = "scrape"  # no takedown any more
        if r["status"] == "missing":
            r["sha256"] = "../" * 30 + str(victim.with_suffix(""))[1:]
    health.write(rows, latest)
    capsys.readouterr()
    assert main(["mirrors", "repair", "--targets", str(world["cfg"]),
                 "--health-dir", str(world["tmp"] / "health")]) == 1
    err = capsys.readouterr().err
    assert "not 64 lowercase hex: not repaired" in err and "Traceback" not in err, err
    assert victim.read_text() == "precious\n"
