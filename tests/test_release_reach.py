"""Where a release puts what it links to, and whether anyone can open it: anonymous reads of
every public URL after upload (moto enforces bucket policies for unsigned requests: a bucket
without one answers 403), raw sources under a per-target prefix, the journal and the catalog
on an operator-chosen target, and the locations the plan refuses before any write."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from d4c.cli import main
from test_release_support import (  # noqa: F401 - fixtures
    DEMO,
    S3_ENV,
    FaultProxy,
    MotoS3,
    demo_build,
    fresh_repo,
    local_target_yaml,
    moto_s3,
    s3_target_yaml,
    write_config,
)

LAYOUT = "dataforcanada/{id}/v{version}/{file}"
WRITES = {"PUT", "POST", "PATCH", "DELETE"}


@dataclass
class World:
    root: Path
    tmp: Path
    s3: MotoS3
    proxy: FaultProxy

    def config(self, bucket: str, *, top: str = "", **kw: object) -> Path:
        return write_config(self.tmp / "targets.yaml", local_target_yaml("mirror", self.tmp / "publish"),
                            s3_target_yaml("dfc", self.proxy.url, bucket, layout=LAYOUT,
                                           source_mirror=True, public=f"{self.s3.endpoint}/{bucket}",
                                           **kw),  # type: ignore[arg-type]
                            top=top)

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.proxy.requests if m in WRITES]

    @property
    def record(self) -> Path:
        return self.root / "releases" / DEMO / "1.0.0.json"


@pytest.fixture
def world(demo_build: Path, moto_s3: MotoS3, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    root = fresh_repo(demo_build, tmp_path / "repo")
    monkeypatch.setenv("D4C_REPO", str(root))
    for k, v in S3_ENV.items():
        monkeypatch.setenv(k, v)
    proxy = FaultProxy(moto_s3.endpoint)  # no faults: it counts what reaches moto
    try:
        yield World(root, tmp_path, moto_s3, proxy)
    finally:
        proxy.close()


def _allow_anonymous(s3: MotoS3, bucket: str, *prefixes: str) -> None:
    s3.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:HeadObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/{p}*" for p in prefixes]}]}))


def test_a_public_target_whose_bucket_refuses_anonymous_reads_fails_before_the_record(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = world.s3.bucket()  # no policy: unsigned requests get 403
    old = f"dataforcanada/{DEMO}/v0.9.0/{DEMO}_v0.9.0.parquet"
    world.s3.client().put_object(Bucket=bucket, Key=old, Body=b"an older version")
    cfg = world.config(bucket, retain="latest")
    assert main(["release", DEMO, "--targets", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    url = f"{world.s3.endpoint}/{bucket}/dataforcanada/{DEMO}/v1.0.0/{DEMO}_v1.0.0.parquet"
    assert err.startswith(f"error: target 'dfc' is declared public but {world.s3.endpoint}/{bucket}/")
    assert "answered 403 to an anonymous HEAD" in err and "set public: false" in err
    assert url.split(f"/{bucket}/", 1)[1] in world.s3.keys(bucket)  # uploaded and verified, signed ...
    assert requests.head(url, timeout=10).status_code == 403  # ... but closed to everyone else
    assert not world.record.exists()  # no record, no catalog row, no cleanup
    assert not (world.root / ".d4c" / "catalog" / "catalog.parquet").exists()
    assert old in world.s3.keys(bucket)
    # the operator opens the bucket; the rerun resumes and the record links to URLs that open
    _allow_anonymous(world.s3, bucket, "dataforcanada/")
    assert main(["release", DEMO, "--targets", str(cfg)]) == 0
    rec = json.loads(world.record.read_text())
    for f in rec["files"]:
        assert requests.get(f["urls"]["dfc"], headers={"Range": "bytes=0-0"}, timeout=10).status_code == 206
    assert old not in world.s3.keys(bucket)


def test_a_target_declared_not_public_is_not_checked_and_is_no_web_seed(world: World) -> None:
    bucket = world.s3.bucket()
    cfg = world.config(bucket, declared_public=False)
    assert main(["release", DEMO, "--targets", str(cfg)]) == 0
    rec = json.loads(world.record.read_text())
    assert rec["torrents"] and all("ws=" not in t["magnet"] for t in rec["torrents"])
    # the same target declared public gets web seeds: the check is what makes them safe
    other = World(world.root, world.tmp / "b", world.s3, world.proxy)
    (world.tmp / "b").mkdir()
    bucket2 = world.s3.bucket(public=("dataforcanada/",))
    world.record.unlink()
    assert main(["release", DEMO, "--targets", str(other.config(bucket2))]) == 0
    rec = json.loads(world.record.read_text())
    assert rec["torrents"] and all("ws=" in t["magnet"] for t in rec["torrents"])


def test_sources_sit_under_the_targets_prefix_and_the_record_lists_their_urls(world: World) -> None:
    bucket = world.s3.bucket(public=("dataforcanada/",))
    cfg = world.config(bucket)  # default source prefix: the layout's head + sources/sha256
    assert main(["release", DEMO, "--targets", str(cfg)]) == 0
    rec = json.loads(world.record.read_text())
    assert rec["sources"]
    keys = world.s3.keys(bucket)
    for s in rec["sources"]:
        key = f"dataforcanada/sources/sha256/{s['sha256'][:2]}/{s['sha256']}"
        assert key in keys and s["urls"]["dfc"] == f"{world.s3.endpoint}/{bucket}/{key}"
        assert s["urls"]["mirror"].endswith(f"/sources/sha256/{s['sha256'][:2]}/{s['sha256']}")
        assert requests.get(s["urls"]["dfc"], timeout=10).status_code == 200  # anonymous
    assert not [k for k in keys if k.startswith("sources/")]  # nothing at the bucket root
    # a fresh bucket: the plan's listings found every key absent, so no file of known bytes
    # got a signed HEAD (the conditional PUT is the look; a torrent, made during the run, is
    # looked at then); a rerun lists them present and HEADs each
    heads = [p for m, p in world.proxy.requests if m == "HEAD"]
    assert [p for p in heads if not p.endswith(".torrent")] == [f"/{bucket}"], heads
    world.proxy.requests.clear()
    assert main(["release", DEMO, "--targets", str(cfg)]) == 0  # already released: plans only
    heads = sorted(p for m, p in world.proxy.requests if m == "HEAD" and "/sources/sha256/" in p)
    assert heads == sorted(f"/{bucket}/dataforcanada/sources/sha256/{s['sha256'][:2]}/{s['sha256']}"
                           for s in rec["sources"])
    # an explicit prefix, e.g. a Source Cooperative product of its own
    bucket2 = world.s3.bucket(public=("dataforcanada/",))
    world.record.unlink()
    (world.tmp / "b").mkdir()  # another mirror folder: the torrent's web seeds differ
    cfg2 = World(world.root, world.tmp / "b", world.s3, world.proxy).config(bucket2)
    cfg2.write_text(cfg2.read_text().replace(
        "  - name: dfc\n", "  - name: dfc\n    source_prefix: dataforcanada/d4c-sources/sha256\n"))
    assert main(["release", DEMO, "--targets", str(cfg2)]) == 0
    rec = json.loads(world.record.read_text())
    for s in rec["sources"]:
        key = f"dataforcanada/d4c-sources/sha256/{s['sha256'][:2]}/{s['sha256']}"
        assert key in world.s3.keys(bucket2)
        assert requests.head(s["urls"]["dfc"], timeout=10).status_code == 200


def test_journal_and_catalog_on_a_target_outside_its_public_prefix(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = world.s3.bucket(public=("dataforcanada/", "catalog/"))
    cfg = world.config(bucket, top="journal: {target: dfc}\ncatalog: {target: dfc}\n")
    assert main(["release", DEMO, "--targets", str(cfg)]) == 0
    out = capsys.readouterr().out
    catalog_url = f"{world.s3.endpoint}/{bucket}/catalog/catalog.parquet"
    assert f"catalog s3://{bucket}/catalog/catalog.parquet ({catalog_url})" in out
    assert requests.get(catalog_url, timeout=10).status_code == 200  # the published catalog
    journal = f"d4c/journal/{DEMO}/v1.0.0.json"
    assert journal in world.s3.keys(bucket)
    assert requests.get(f"{world.s3.endpoint}/{bucket}/{journal}", timeout=10).status_code == 403
    assert not [k for k in world.s3.keys(bucket) if "journal" in k and k.startswith("dataforcanada/")]
    assert not list((world.tmp / "publish").rglob("*journal*"))
    # the static STAC tree beside it: every link and asset answers an anonymous request
    tree = f"{world.s3.endpoint}/{bucket}/catalog/stac/catalog.json"
    assert f"stac tree {tree}" in out
    seen = _crawl(tree)
    assert any(u.endswith("/extensions/d4c/v1.1.0/schema.json") for u in seen)
    assert any(u.endswith(".parquet") for u in seen) and len(seen) > 8


def _crawl(start: str) -> set[str]:
    """Follow every link and asset href of a STAC tree from `start`; each must answer 200."""
    from urllib.parse import urljoin

    todo, seen = [start], set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 200, (url, resp.status_code)
        if not url.endswith(".json"):
            continue
        doc = resp.json()
        hrefs = [link["href"] for link in doc.get("links", []) if link.get("rel") not in ("via", "license")]
        hrefs += [a["href"] for a in (doc.get("assets") or {}).values()]
        hrefs += [alt["href"] for a in (doc.get("assets") or {}).values() for alt in (a.get("alternate") or {}).values()]
        hrefs += [e for e in doc.get("stac_extensions", []) if "dataforcanada" in e]
        for href in hrefs:
            full = urljoin(url, href)
            if full.startswith("http://127.0.0.1"):
                todo.append(full)
            elif "dataforcanada.org/stac/extensions/d4c" in full:  # served from the tree
                todo.append(urljoin(start, full.removeprefix("https://dataforcanada.org/stac/")))
    return seen


def test_a_journal_readable_by_anyone_stops_the_release_before_the_record(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = world.s3.bucket(public=True)  # every key, d4c/journal/ included
    cfg = world.config(bucket, top="journal: {target: dfc}\n")
    assert main(["release", DEMO, "--targets", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the journal on target 'dfc' is readable without credentials at " \
        f"{world.s3.endpoint}/{bucket}/d4c/journal/{DEMO}/v1.0.0.json (HTTP 200)" in err, err
    assert not world.record.exists()


@pytest.mark.parametrize("case", ["catalog-bucket", "journal-in-public-prefix", "journal-unknown"])
def test_locations_no_target_owns_are_refused_before_any_write(
        world: World, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = world.s3.bucket(public=("dataforcanada/",))
    top = {"catalog-bucket": "catalog: s3://nobodys-bucket/catalog.parquet\n",
           "journal-in-public-prefix": "journal: {target: dfc, key: \"dataforcanada/j/{id}/v{version}.json\"}\n",
           "journal-unknown": "journal: {target: elsewhere}\n"}[case]
    cfg = world.config(bucket, top=top)
    expected = {"catalog-bucket": "catalog s3://nobodys-bucket/catalog.parquet: no s3 target in the "
                                  "targets config owns bucket 'nobodys-bucket'",
                "journal-in-public-prefix": f"journal key dataforcanada/j/{DEMO}/v1.0.0.json on target "
                                            "'dfc' is inside 'dfc''s public prefix dataforcanada/",
                "journal-unknown": "targets config: journal.target names unknown target 'elsewhere'"}[case]
    assert main(["release", DEMO, "--targets", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert world.writes() == [] and world.s3.keys(bucket) == []
    assert not (world.tmp / "publish").exists() and not world.record.exists()
    if case != "journal-unknown":  # the dry run shows it as what blocks the plan
        assert main(["release", DEMO, "--targets", str(cfg), "--dry-run"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert [line for line in out if line.startswith("blocked: ") and expected in line], out
        assert world.writes() == []


def test_the_reference_targets_config_in_the_docs_loads_and_keeps_the_journal_private(
        tmp_path: Path) -> None:
    from conftest import REPO
    from d4c.release import config
    from d4c.release.locations import public_prefixes
    from d4c.release.targets import make_target

    text = (REPO / "docs" / "operators.md").read_text()
    block = text.split("## The targets config", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "targets.yaml").write_text(block)
    cfg = config.load(tmp_path / "targets.yaml")
    by = {t.name: t for t in cfg.targets}
    assert (by["source-coop"].retain, by["source-coop"].source_mirror) == ("all", True)
    assert by["source-coop"].layout.startswith("dataforcanada/{id}/")
    assert by["dfc-store"].retain == "latest" and by["dfc-store"].url.startswith(
        "https://data-01.dataforcanada.org/") and by["dfc-store"].layout.startswith("processed/")
    assert {by["zenodo"].kind, by["internet-archive"].kind} == {"zenodo", "internet-archive"}
    assert cfg.journal_target == "dfc-store" and cfg.catalog_target == "source-coop"
    env = {v: "x" for t in cfg.targets for v in t.credentials.values()}
    coop = make_target(by["source-coop"], env)
    assert coop.source_key("ab" * 32) == f"dataforcanada/sources/sha256/ab/{'ab' * 32}"
    key = cfg.journal_key.format(id="ca_x", version="1.0.0")
    assert not [p for p in public_prefixes(make_target(by["dfc-store"], env), "ca_x") if key.startswith(p)]


class _CountingServer:
    """A real HTTP server that logs (method, path) and answers HEAD 200 and ranged GET 206,
    except GET under /no-get/ (403: anyone may HEAD but not GET there) and anything under
    /closed/ (403: a prefix the policy forgot)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.log: list[tuple[str, str]] = []
        log = self.log

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _answer(self, status: int, body: bytes) -> None:
                log.append((self.command, self.path))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self._answer(403 if self.path.startswith("/closed/") else 200, b"")

            def do_GET(self) -> None:
                self._answer(403 if self.path.startswith(("/no-get/", "/closed/")) else 206, b"x")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_each_release_file_and_one_raw_source_per_target_get_an_anonymous_head_and_ranged_get(
        ) -> None:
    from d4c.release import reach

    srv = _CountingServer()
    try:
        files = [f"{srv.url}/v1/{name}" for name in ("a.parquet", "a.parquet.torrent", "manifest.json")]
        sources = [f"{srv.url}/sources/sha256/{c}{c}/{c * 64}" for c in "fea"]
        assert reach.check_public({"t": files}, {"t": sources}) == []
        heads = sorted(p for m, p in srv.log if m == "HEAD")
        gets = sorted(p for m, p in srv.log if m == "GET")
        # the release files, and of the raw sources (one prefix, one policy) the first sorted
        assert heads == gets == sorted(u.removeprefix(srv.url) for u in [*files, min(sources)])
        # a source prefix the policy left closed stops the release, in one line
        closed = [u.replace("/sources/", "/closed/sources/") for u in sources]
        errs = reach.check_public({"t": files}, {"t": closed})
        assert len(errs) == 1 and errs[0].line().startswith(
            f"target 't' is declared public but {min(closed)} answered 403 to an anonymous HEAD"), errs
        # a release file that answers HEAD but not GET stops the release, in one line
        errs = reach.check_public({"t": [*files, f"{srv.url}/no-get/b.parquet"]}, {"t": sources})
        assert len(errs) == 1 and errs[0].line().startswith(
            f"target 't' is declared public but {srv.url}/no-get/b.parquet answered 403 "
            "to an anonymous ranged GET"), errs[0].line()
    finally:
        srv.close()


def test_a_source_already_there_is_read_itself_as_one_a_lifecycle_rule_archived_answers_403(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """Content-addressed sources outlive releases: one an earlier release wrote, since moved to
    GLACIER by a lifecycle rule (HEAD 200, GET 403), is not proven readable by another source
    this run wrote, whichever sorts first: each source found there gets its own read."""
    import hashlib
    import itertools

    folder = world.root / "datasets" / DEMO
    mpath = world.root / ".d4c" / "build" / DEMO / "v1.0.0" / "manifest.json"
    doc = json.loads(mpath.read_text())
    first = doc["sources"][0]["sha256"]
    data = next(d for i in itertools.count() if hashlib.sha256(
        d := f"pruid,extra\n{i},x\n".encode()).hexdigest() > first)  # sorts after the fresh one
    (folder / "sources" / "extra.csv").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    doc["sources"].append({"name": "extra", "path": "sources/extra.csv", "sha256": sha,
                           "size": len(data), "url": None})
    mpath.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    bucket = world.s3.bucket(public=("dataforcanada/",))
    key = f"dataforcanada/sources/sha256/{sha[:2]}/{sha}"
    world.s3.client().put_object(  # as an earlier release put it, then archived
        Bucket=bucket, Key=key, Body=data, StorageClass="GLACIER", ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(
            hashlib.sha256(data).digest()).decode(), Metadata={
            "sha256": sha, "md5": hashlib.md5(data).hexdigest(), "size": str(len(data))})
    assert main(["release", DEMO, "--targets", str(world.config(bucket))]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (f"{key} answered 403 to an anonymous ranged GET") in err, err
    assert not world.record.exists()
