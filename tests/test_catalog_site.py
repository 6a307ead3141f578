"""`d4c catalog site`: the static site built from a real catalog (release records through the
catalog code) and a real health file (`d4c mirrors check` against three local HTTP
mirrors the test starts, one copy deleted), viewed in headless Chromium.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
messages ending in NUL on fds 3 and 4), so no client library and no port are needed. The
overview, the health page and a dataset page must load with zero console errors, failed
loads or exceptions; every link on them must resolve (local files exist, mirror links
answer on the test's servers; DOI links are https://doi.org/<the item's sci:doi>, the one
kind of address that cannot be answered offline). Set D4C_SITE_SCREENSHOTS=docs/img to
rewrite the committed screenshots.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
import requests
from catalog_factory import five_records, make_record, write_records
from conftest import REPO
from d4c.catalog import build_catalog, load_records, metadata_from
from d4c.catalog.site import dataset_views
from d4c.catalog.site_html import href_of
from d4c.cli import main
from test_catalog_query import _RangeHandler

D4C = [sys.executable, "-m", "d4c.cli"]
EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> & "q"'
TARGETS = ("s3", "zenodo", "local")
ASSETS = REPO / "scripts/d4c/catalog/site_assets"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _records() -> list[dict[str, Any]]:
    evil = make_record("ca_test_evil-title", "0.1.0", bbox=[-80.0, 45.0, -70.0, 50.0])
    evil["metadata"]["title"] = {"en": EVIL, "fr": "Titre " + EVIL}
    evil["metadata"]["description"] = {"en": "</script>" + EVIL, "fr": "Desc"}
    return [*five_records(), evil]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Records whose copies live on three local mirrors; the catalog; a health file."""
    root = tmp_path_factory.mktemp("site")
    servers = {t: ThreadingHTTPServer(("127.0.0.1", 0),
                                      partial(_Quiet, directory=str(root / "mirrors" / t)))
               for t in TARGETS}
    for s in servers.values():
        threading.Thread(target=s.serve_forever, daemon=True).start()
    records = _records()
    for rec in records:
        for f in rec["files"]:
            for t in list(f["urls"]):
                path = urlparse(f["urls"][t]).path
                f["urls"][t] = f"http://127.0.0.1:{servers[t].server_port}{path}"
                (root / "mirrors" / t / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                (root / "mirrors" / t / path.lstrip("/")).write_bytes(b"x" * f["size"])
    gone = next(f["urls"]["zenodo"] for r in records for f in r["files"]
                if f["file"] == "ca_d4c_provinces-territories_v1.1.0.parquet")
    (root / "mirrors/zenodo" / urlparse(gone).path.lstrip("/")).unlink()
    write_records(root / "releases", records)
    catalog = root / "catalog.parquet"
    build_catalog(load_records(root / "releases"), catalog, metadata=metadata_from(root))
    env = {**os.environ, "CI": ""}  # a run of the real check, not its CI annotations
    check = subprocess.run([*D4C, "mirrors", "check", "--catalog", str(catalog), "--tier", "1",
                            "--no-scrape", "--no-progress", "--date", "2026-12-01",
                            "--health-dir", str(root / "health")],
                           capture_output=True, text=True, env=env, timeout=120, check=False)
    assert check.returncode == 1, check.stderr  # the deleted copy
    assert "ca_d4c_provinces-territories_v1.1.0.parquet on mirror zenodo" in check.stderr
    site = root / "site"
    assert main(["catalog", "site", "--catalog", str(catalog), "--health", str(root / "health"),
                 "--out", str(site)]) == 0
    yield {"root": root, "catalog": catalog, "site": site, "records": records, "gone": gone}
    for s in servers.values():
        s.shutdown()
        s.server_close()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_same_catalog_same_bytes_and_rebuild_replaces(world: dict[str, Any], tmp_path: Path) -> None:
    again = tmp_path / "again"
    health = str(world["root"] / "health" / "2026-12-01.parquet")
    cmd = ["catalog", "site", "--catalog", str(world["catalog"]), "--health", health]
    assert main([*cmd, "--out", str(again)]) == 0
    (again / "datasets" / "stale.html").write_text("old")
    assert main([*cmd, "--out", str(again)]) == 0
    assert _tree(again) == _tree(world["site"])
    # The same catalog read over HTTP (Range requests) gives the same site.
    handler = type("H", (_RangeHandler,), {"body": world["catalog"].read_bytes(), "served": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/catalog.parquet"
        assert main(["catalog", "site", "--catalog", url, "--health", health,
                     "--out", str(tmp_path / "remote")]) == 0
    finally:
        server.shutdown()
        server.server_close()
    assert _tree(tmp_path / "remote") == _tree(world["site"])
    pages = sorted(p.name for p in (again / "datasets").iterdir())
    assert pages == sorted({f"{r['id']}.html" for r in world["records"]})  # stale.html is gone


def test_health_from_the_catalog_fields(world: dict[str, Any], tmp_path: Path) -> None:
    """Without --health, the at-risk flags are what `d4c mirrors annotate` wrote."""
    catalog = tmp_path / "annotated.parquet"
    shutil.copy(world["catalog"], catalog)
    assert main(["mirrors", "annotate", "--catalog", str(catalog), "--health-dir",
                 str(world["root"] / "health")]) == 0
    assert main(["catalog", "site", "--catalog", str(catalog), "--out", str(tmp_path / "s")]) == 0
    page = "datasets/ca_d4c_provinces-territories.html"
    mine, full = ((tmp_path / "s" / page).read_text(), (world["site"] / page).read_text())
    # The check's own clock stamps "last verified" (its --date only names the health file).
    risk = re.compile(r'<span class="badge risk">at risk</span> 2 copies pass, '
                      r"last verified \d{4}-\d{2}-\d{2}T")
    assert risk.search(mine) and risk.search(full)
    assert "capitals: 2 of 3 copies pass" in full and "copies pass (fewer" not in mine
    assert 'class="badge bad">missing' in full and "missing" not in mine  # no copy verdicts
    assert main(["catalog", "site", "--catalog", str(world["catalog"]), "--out",
                 str(tmp_path / "bare")]) == 0  # a catalog never annotated: not checked
    assert "not checked" in (tmp_path / "bare" / page).read_text()
    assert "<h2>Versions at risk: 0</h2>" in (tmp_path / "bare" / "health.html").read_text()


def test_bad_input_is_one_line(world: dict[str, Any], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    cases = [(["--catalog", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "o")],
              "no catalog at"),
             (["--catalog", str(world["catalog"]), "--out", str(mine)], "was not written by"),
             (["--catalog", str(world["catalog"]), "--health", str(world["catalog"]),
               "--out", str(tmp_path / "o")], "is not a health file"),
             (["--catalog", str(world["root"] / "health" / "2026-12-01.md"),
               "--out", str(tmp_path / "o")], "is not a catalog file")]
    for args, words in cases:
        assert main(["catalog", "site", *args]) == 1, args
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert (mine / "notes.txt").read_text() == "keep"


def test_untrusted_addresses_and_ids() -> None:
    assert "<a" not in href_of("javascript:alert(1)", "main")
    assert "<a" not in href_of("s3://bucket/key", "sc-s3") and "s3://bucket/key" in href_of(
        "s3://bucket/key", "sc-s3")
    assert href_of('https://h/"><x', "m") == '<a href="https://h/&quot;&gt;&lt;x">m</a>'
    item = {"id": "x", "collection": "../etc", "properties": {}, "assets": {}, "links": []}
    from d4c.errors import D4CError

    with pytest.raises(D4CError, match="cannot be a page name"):
        dataset_views([item], {}, None)


def test_vendored_files_are_the_pinned_packages() -> None:
    rows = re.findall(r"^\| (\S+) \| .+? \| ([0-9a-f]{64}) \|$",
                      (ASSETS / "README.md").read_text(), re.MULTILINE)
    assert len(rows) == 7
    for rel, sha in rows:
        assert hashlib.sha256((ASSETS / rel).read_bytes()).hexdigest() == sha, rel


_ON_3_AND_4 = ("import fcntl, os, sys; r, w = (fcntl.fcntl(int(a), fcntl.F_DUPFD, 10) "
               "for a in sys.argv[1:3]); os.dup2(r, 3); os.dup2(w, 4); os.close(r); "
               "os.close(w); os.execv(sys.argv[3], sys.argv[3:])")


class Chromium:
    """Headless Chromium over the DevTools protocol on a pipe: one page, its events kept."""

    def __init__(self, exe: str, profile: Path) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        # The protocol's fixed fds: Chromium reads fd 3 and writes fd 4. A tiny exec wrapper
        # puts the pipes there (sh cannot name fds above 9; preexec_fn is unsafe with threads).
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ON_3_AND_4, str(cmd_r), str(out_w), exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions",
             "--disable-dev-shm-usage",
             "--hide-scrollbars", "--window-size=1280,900", "about:blank"],
            pass_fds=(cmd_r, out_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(out_w)
        self._next, self.events, self._answers = 0, [], queue.Queue()  # type: ignore[var-annotated]
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            self.call(method, session=self.session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900,
                  "deviceScaleFactor": 1, "mobile": False}, session=self.session)

    def _read(self) -> None:
        buf = b""
        while chunk := os.read(self._out_r, 1 << 16):
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                (self._answers.put(msg) if "id" in msg else self.events.append(msg))

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        answer = self._answers.get(timeout=30)
        assert answer["id"] == self._next and "error" not in answer, answer
        return dict(answer.get("result") or {})

    def visit(self, url: str) -> list[dict[str, Any]]:
        """Load `url`; the events seen until its load event (and a moment after)."""
        self.events.clear()
        self.call("Page.navigate", {"url": url}, self.session)
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            assert time.monotonic() < deadline, f"{url} did not load"
            time.sleep(0.05)
        time.sleep(0.3)  # late errors (a script that fails after load) land in this window
        return list(self.events)

    def js(self, expression: str) -> Any:
        got = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, self.session)
        assert "exceptionDetails" not in got, got
        return got["result"].get("value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"},
                                          self.session)["data"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        os.close(self._cmd_w)


def _problems(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params") or {}
        if m == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails']}")
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            out.append(f"console.{p['type']}: {p.get('args')}")
        elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
            out.append(f"log {p['entry']['level']}: {p['entry'].get('text')} {p['entry'].get('url')}")
        elif m == "Network.loadingFailed":
            out.append(f"failed load: {p}")
    return out


def _check_link(url: str, dois: set[str], gone: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        assert Path(unquote(parsed.path)).is_file(), url
    elif parsed.hostname == "127.0.0.1":
        got = requests.head(url, timeout=10)  # the deleted copy is the one that must 404
        assert got.status_code == (404 if url == gone else 200), url
    else:  # the one external kind: a DOI of the catalog, at the DOI resolver
        assert parsed.scheme == "https" and parsed.hostname == "doi.org", url
        assert parsed.path.lstrip("/") in dois, url


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:  # never a skip: the site's promise is what this test shows
        pytest.fail("chromium is not installed: run `make test-tools` "
                    "(scripts/install-test-tools.sh installs Debian's chromium)", pytrace=False)
    browser = Chromium(exe, tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.close()


# page -> (screenshot, footprint boxes on its map: the 5 datasets, the 2 versions, 1 version)
PAGES = {"index.html": ("site-overview.png", 5), "health.html": ("site-health.png", 0),
         "datasets/ca_d4c_provinces-territories.html": ("site-dataset.png", 2),
         "datasets/ca_test_evil-title.html": (None, 1)}


def test_pages_in_chromium(world: dict[str, Any], chromium: Chromium, tmp_path: Path) -> None:
    dois = {f["doi"] for f in world["records"] if f["doi"]}
    shots = Path(os.environ.get("D4C_SITE_SCREENSHOTS") or tmp_path)
    for rel, (shot, count) in PAGES.items():
        url = (world["site"] / rel).as_uri()
        events = chromium.visit(url)
        assert _problems(events) == [], rel
        assert chromium.js("window.__pwned === undefined"), rel
        links = chromium.js("[...document.querySelectorAll('a[href]')].map(a => a.href)")
        loads = chromium.js("[...document.querySelectorAll('link[href],script[src]')]"
                            ".map(e => e.href || e.src)")
        assert links, rel
        for link in sorted(set(links + loads)):
            _check_link(link.split("#")[0], dois, world["gone"])
        boxes = chromium.js("document.querySelectorAll('path.leaflet-interactive').length")
        assert boxes == count, rel  # one box per footprint, and the land outline under them
        want = boxes + 1 if count else 0  # the land is drawn once its script ran: poll a while
        deadline = time.monotonic() + 15
        while chromium.js("document.querySelectorAll('#map path').length") != want \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert chromium.js("document.querySelectorAll('#map path').length") == want, rel
        if shot:
            png = chromium.screenshot()
            assert png.startswith(b"\x89PNG") and len(png) > 20_000
            shots.mkdir(parents=True, exist_ok=True)
            (shots / shot).write_bytes(png)


def test_what_the_pages_say(world: dict[str, Any], chromium: Chromium) -> None:
    site = world["site"]
    chromium.visit((site / "datasets/ca_test_evil-title.html").as_uri())
    assert chromium.js("document.querySelector('h1').textContent") == EVIL
    assert chromium.js("document.title").startswith(EVIL)
    assert chromium.js("document.querySelectorAll('img').length") == 0
    # The map's tooltip gets the title too: hover the footprint, it must stay text.
    x, y = chromium.js("(r => [r.x + r.width / 2, r.y + r.height / 2])(document.querySelector("
                       "'path.leaflet-interactive').getBoundingClientRect())")
    chromium.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y},
                  chromium.session)
    tip = chromium.js("new Promise(ok => setTimeout(() => ok(document.querySelector("
                      "'.leaflet-tooltip')?.textContent), 300))")
    assert tip == f"{EVIL} (0.1.0)"
    assert chromium.js("document.querySelectorAll('img').length") == 0
    assert chromium.js("window.__pwned === undefined")
    chromium.visit((site / "datasets/ca_d4c_provinces-territories.html").as_uri())
    text = chromium.js("document.body.innerText")
    assert "Jeu de données ca_d4c_provinces-territories" in text and "Limites du Canada." in text
    assert "Version 1.1.0 (latest)" in text and "Version 1.0.0 (deprecated)" in text
    latest = next(r for r in world["records"] if r["version"] == "1.1.0")
    assert f"Data for Canada (2026). Dataset ca_d4c_provinces-territories (Version 1.1.0) " \
           f"[Data set]. Data for Canada. https://doi.org/{latest['doi']}" in text
    row = chromium.js("[...document.querySelectorAll('tr')].find(r => r.textContent.includes("
                      "'territories_v1.1.0.parquet') && r.textContent.includes('data')).innerText")
    assert re.search(r"local\s+ok\s+s3\s+ok\s+zenodo\s+missing\s+torrent\s+ok", row), row
    assert "at risk" in text and "capitals: 2 of 3 copies pass (fewer than 3)" in text
    chromium.visit((site / "health.html").as_uri())
    text = chromium.js("document.body.innerText")
    assert "Failing copies: 1" in text and "ca_d4c_provinces-territories_v1.1.0.parquet" in text
    assert "2026-12-01.parquet" in text and "missing" in text
