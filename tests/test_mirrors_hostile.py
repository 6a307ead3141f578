"""`d4c mirrors check` against hostile inputs: a tar bomb of a source bundle, a server that
answers one byte at a time or never stops, sizes over int64, one version's claims about a
copy another version shares, file:// and http(s) URLs that only mention the sha256, too
many copies, control characters in names and a catalog sha256 that is a path. Each is one
warning or failure line, never a traceback, a hang or a gigabyte read."""
# ruff: noqa: F811 - pytest fixtures imported from other test modules
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from d4c.catalog.writer import items_to_table, table_to_items
from d4c.cli import main
from d4c.mirrors import checks, sources
from d4c.mirrors.checks import Context
from d4c.mirrors.inventory import Artifact, Copy, Version
from d4c.mirrors.net import Net
from d4c.mirrors.run import Options, check
from test_mirrors_check import world  # noqa: F401 - fixture
from test_mirrors_sources import DATE, MANIFEST, SHA, bundle, listed, mirrors
from test_mirrors_support import World
from test_release_support import moto_s3  # noqa: F401 - fixture

NOW = "2026-12-02T00:00:00Z"


def raw_bundle(tmp: Path, tar: bytes) -> Version:
    """A version whose source bundle is these (uncompressed) tar bytes, gzipped."""
    version = bundle(tmp, {})
    data = gzip.compress(tar, compresslevel=1)
    path = Path(version.artifacts[0].copies[0].href.removeprefix("file://"))
    path.write_bytes(data)
    version.artifacts[0].size, version.artifacts[0].sha256 = len(data), hashlib.sha256(data).hexdigest()
    return version


def members_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"x_v1.0.0_source/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def warning_of(tmp: Path, tar: bytes) -> str | None:
    ctx = Context(Net(per_host=1, rate=0, retries=0), DATE, NOW)
    arts, warning = sources.listed(ctx, raw_bundle(tmp, tar))
    assert arts == []
    return warning["evidence"] if warning else None


# -- 1. the bundle's tar ---------------------------------------------------------------

def test_a_long_name_or_pax_header_bomb_is_refused_before_it_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tarfile reads a GNU long name or a pax header whole: 32 MiB of one is refused before
    the read (it was read into memory; 1.5 GiB of one took 1.74 GB)."""
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    gnu, pax = tarfile.TarInfo("././@LongLink"), tarfile.TarInfo("././@PaxHeader")
    gnu.type, pax.type = tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE
    gnu.size = pax.size = 32 << 20
    for header in (gnu.tobuf(tarfile.GNU_FORMAT), pax.tobuf(tarfile.PAX_FORMAT)):
        tar = header + b"a" * (32 << 20) + members_tar({"mirrors.json": mirrors({})})
        why = warning_of(tmp_path, tar)
        assert why == (f"the source list of the bundle is unusable: its bundle has a tar header or "
                       f"member of {32 << 20} bytes, over {16 << 20}"), why


def test_headers_count_towards_the_scan_cap_and_members_are_capped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Empty members cost no member bytes but 512 header bytes and a TarInfo each: a million
    of them took 90 s and the version got no list and no warning."""
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    junk = tarfile.TarInfo("x_v1.0.0_source/junk").tobuf(tarfile.GNU_FORMAT)
    tail = members_tar({"mirrors.json": mirrors({})})
    assert warning_of(tmp_path, junk * 10_001 + tail) == (
        "the source list of the bundle is unusable: its bundle has over 10000 members before mirrors.json")
    monkeypatch.setattr(sources, "MAX_SCAN", 1 << 20)
    assert warning_of(tmp_path, junk * 3000 + tail) == (
        "the source list of the bundle is unusable: its bundle holds over 1048576 bytes "
        "(tar headers included) before mirrors.json")


# -- 2. slow and endless servers -------------------------------------------------------

class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"abc"

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._go(False)

    def do_GET(self) -> None:
        self._go(True)

    def _go(self, get: bool) -> None:
        try:
            if self.path.startswith("/slow/"):  # one header byte every 0.1 s (for 30 s at most)
                for b in b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Pad: " + b"a" * 300 + b"\r\n\r\n":
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            self.send_response(200)
            if self.path.startswith("/endless/") and get:  # no length, 64 MiB of zeros
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(1024):
                    self.wfile.write(b"\0" * 65536)
                return
            if self.path.startswith("/trickle/") and get:  # a byte every 0.1 s, no length
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(300):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            if get:
                self.wfile.write(self.body)
        except OSError:
            pass  # the client hung up: what a deadline does


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def source_copy(url: str, size: int = 3) -> Artifact:
    return sources.SourceCopy("x-1.0.0", "x", "1.0.0", f"source-{SHA}", "a", size, SHA,
                              (sources.ROLE,), [Copy("sc", url)])


def test_a_server_that_sends_one_byte_at_a_time_fails_within_the_deadline(server: str) -> None:
    """Each byte came within the read timeout, so one HEAD ran for hours and the check waited."""
    ctx = Context(Net(per_host=1, rate=0, retries=1, backoff=0.01, deadline=1.0), DATE, NOW)
    start = time.monotonic()
    art = source_copy(f"{server}/slow/{SHA}")
    (head,) = checks.tier1(ctx, checks.ServiceChecksums(ctx.net), Version("x", "x", "1", "", [art]),
                           art, art.copies[0])
    assert (head["status"], head["evidence"]) == (
        "unreachable", "no answer within 1 s (a server that sends too slowly)")
    trickle = source_copy(f"{server}/trickle/{SHA}", size=100)  # 10 s at a byte every 0.1 s
    (full,) = checks.tier3(ctx, trickle, trickle.copies[0], "rolling sample")
    assert (full["status"], full["evidence"]) == (
        "unreachable", "no answer within 1 s (a server that sends too slowly)")
    assert time.monotonic() - start < 6
    (fine,) = checks.tier3(ctx, source_copy(f"{server}/ok/{SHA}"), Copy("sc", f"{server}/ok/{SHA}"), "x")
    assert fine["status"] == "corrupt" and fine["evidence"].startswith("3 bytes with sha256 ba7816bf")


def test_a_body_without_end_is_read_to_its_size_and_one_byte(server: str) -> None:
    ctx = Context(Net(per_host=1, rate=0, retries=0), DATE, NOW)
    art = source_copy(f"{server}/endless/{SHA}")
    (full,) = checks.tier3(ctx, art, art.copies[0], "rolling sample")
    assert (full["status"], full["evidence"], full["bytes_read"]) == (
        "corrupt", "more than 3 bytes (stopped at 4), expected 3 (rolling sample)", 4)


# -- 3, 5, 7. the list's sizes and URLs ----------------------------------------------------

def test_a_size_over_int64_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """10**30 reached the health file's int64 column: OverflowError, exit 3, no health file."""
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    for size in (10**30, -1, True, "3"):
        man = json.dumps({"sources": [{"name": "a", "sha256": SHA, "size": size}]}).encode()
        arts, why = listed(tmp_path, {"manifest.json": man, "mirrors.json": mirrors({"sc": f"https://sc/{SHA}"})})
        assert arts == [] and why == ("1 entries of the bundle's mirrors.json left out (not a copy on one of "
                                      "the item's mirrors named by its sha256, a bad name, sha256 or size): "
                                      f"source '{SHA}' (size {size})"), why


def test_urls_that_only_mention_the_sha256_or_are_off_the_items_mirrors_are_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`file:///etc/passwd?/<sha>` passed the endswith check (the health file then held
    /etc/passwd's size and sha256), and any http(s) URL with the sha256 in it was requested."""
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    good = {"sc": f"https://sc/sources/sha256/ab/{SHA}", "disk": f"file:///srv/publish/sources/ab/{SHA}"}
    bad = {"disk": [f"file:///etc/passwd?/{SHA}", f"file:///etc/passwd#/{SHA}", f"file://evil/x/{SHA}",
                    f"file:///srv/../etc/{SHA}"],
           "sc": [f"http://169.254.169.254/latest?{SHA}", f"https://169.254.169.254/{SHA}",
                  f"https://sc/x/{SHA}?a=1", f"https://sc/{SHA}/x", f"http://sc/{SHA}"],
           "zz": [f"https://sc/{SHA}"]}
    for mirror, urls in bad.items():
        for url in urls:
            arts, why = listed(tmp_path, {"manifest.json": MANIFEST, "mirrors.json": mirrors({mirror: url})})
            assert arts == [] and why and why.endswith(f"'{mirror}': {url!r}"), (url, why)
    arts, why = listed(tmp_path, {"manifest.json": MANIFEST, "mirrors.json": mirrors(good)})
    assert sorted(c.href for a in arts for c in a.copies) == sorted(good.values()) and why is None
    # a catalog from before d4c:mirror: the main href's mirror is `main`, the source's its name
    old = bundle(tmp_path / "old", {"manifest.json": MANIFEST, "mirrors.json": mirrors(good)})
    old.artifacts[1].copies = [Copy("main", "https://sc/x/v1.0.0/x.parquet")]
    arts, warning = sources.listed(Context(Net(per_host=1, rate=0, retries=0), DATE, NOW), old)
    assert sorted(c.href for a in arts for c in a.copies) == sorted(good.values()) and warning is None


def test_over_a_thousand_copies_in_one_version_is_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 15.8 MiB mirrors.json gave 180,000 copies to HEAD, and no warning."""
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    shas = [f"{i:064x}" for i in range(1, 21)]
    man = json.dumps({"sources": [{"name": "n", "sha256": s, "size": 1} for s in shas]}).encode()
    doc = json.dumps({"mirrors_version": 1, "sources": [
        {"sha256": s, "urls": {f"m{j}": f"https://sc/{s}" for j in range(51)}} for s in shas]}).encode()
    arts, why = listed(tmp_path, {"manifest.json": man, "mirrors.json": doc})
    assert arts == [] and why == ("the bundle's mirrors.json lists 20 sources with 1020 copies, over the caps "
                                  "(10000 sources, 64 copies of one, 1000 in all); none checked")


# -- 4. one version's claims about a shared copy -------------------------------------------

def test_a_version_claiming_another_size_for_a_shared_copy_gets_its_own_verdict(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: str) -> None:
    """A hostile version listed first with the real sha256 and size 1 "owned" the shared copy:
    the real version's intact copy was reported corrupt (and a truncated one could pass)."""
    monkeypatch.setenv("D4C_CACHE", str(tmp_path / "cache"))
    ctx = Context(Net(per_host=1, rate=0, retries=0), DATE, NOW)
    url = f"{server}/ok/{SHA}"
    versions = []
    for name, size in (("evil", 1), ("real", 3)):
        man = json.dumps({"sources": [{"name": "a", "sha256": SHA, "size": size}]}).encode()
        v = bundle(tmp_path / name, {"manifest.json": man, "mirrors.json": mirrors({"sc": url})})
        v.item_id = v.artifacts[0].item_id = f"{name}-1.0.0"
        v.artifacts[1].copies = [Copy("sc", f"{server}/data/x.parquet")]
        versions.append(v)
    with ThreadPoolExecutor(2) as pool:
        found = sources.jobs(ctx, versions, pool)
    rows = [r for v, art, copy in found.work
            for r in checks.tier1(ctx, checks.ServiceChecksums(ctx.net), v, art, copy) if r["check"] == "head"]
    rows += sources.given(rows, found.shared)
    assert sorted((r["item_id"], r["status"]) for r in rows) == [("evil-1.0.0", "corrupt"), ("real-1.0.0", "ok")]


# -- 6, 8. the catalog's names and sha256s, end to end -------------------------------------

def hostile_catalog(w: World) -> str:
    items = table_to_items(pq.read_table(w.catalog))
    assets = items[0]["assets"]
    data = sorted(assets)
    assert len(data) >= 3
    assets[data[0]]["file:checksum"] = "1220" + "../" * 14 + "tmp/victim"
    assets[data[1]]["file:size"] = -5
    name = "x.parquet\n::warning title=INJECTED::from a hostile catalog"
    for key in data[2:]:
        assets[key]["title"] = name
    out = w.tmp / "hostile.parquet"
    pq.write_table(items_to_table(items), out)
    return str(out)


def test_a_bad_catalog_sha256_or_size_is_left_out_and_names_print_escaped(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """`file:checksum` 1220../../x reached path building (repair writes `<path>.part`), and a
    name with a newline became a GitHub workflow command of its own in the error lines."""
    catalog = hostile_catalog(world)
    report = check(catalog, Options(tier=1, date=DATE, retries=0, scrape=False), health_dir=world.tmp / "h")
    assert all(len(r["sha256"] or "x" * 64) == 64 and (r["size"] or 0) >= 0 for r in report.rows)
    left = [r["evidence"] for r in report.rows if r["check"] == "catalog-rows"]
    assert len(left) == 2 and "file:checksum '1220../../" in left[0] and "file:size -5 is not a size" in left[1]
    for obj in world.s3.client().list_objects_v2(Bucket=world.bucket).get("Contents", []):
        world.s3.client().delete_object(Bucket=world.bucket, Key=obj["Key"])  # failures to print
    rc = main(["mirrors", "check", "--catalog", catalog, "--date", DATE, "--tier", "1", "--retries", "0",
               "--no-scrape", "--health-dir", str(world.tmp / "h"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "x.parquet\\n::warning title=INJECTED" in err, err
    assert not any(line.startswith("::") for line in err.splitlines()), err
    assert "Traceback" not in err and err.count("left out (fix the catalog row)") == 2
    md = (world.tmp / "h" / f"{DATE}.md").read_text()
    assert "\n::warning" not in md
