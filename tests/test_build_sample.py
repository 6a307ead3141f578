"""`d4c build --sample` with smaller sources (d4c.sample), against a real HTTP server that
answers Range requests and counts every byte it sends: the sample build reads a zip's
directory and one member, a byte range of another source, and hands a bbox to the
transform; it downloads a small part of the sources, two builds are identical, the
manifest records what was read with hashes, and release refuses it. Hostile specs and
servers are refused in one line."""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from d4c import recipe, sample, schemas
from d4c.cli import main
from d4c.errors import D4CError
from d4c.release.files import read_build
from ruamel.yaml import YAML

TEMPLATE = "ca_statcan_2021_population-density_provinces"
TRANSFORM = '''import csv, io, zipfile
import pyarrow as pa


def build(ctx):
    with zipfile.ZipFile(ctx.source("shapes")) as z:
        rows = list(csv.DictReader(io.TextIOWrapper(z.open("places.csv"), "utf-8")))
    box = ctx.sample_bbox("shapes")
    if box is not None:
        rows = [r for r in rows if box[0] <= float(r["x"]) <= box[2] and box[1] <= float(r["y"]) <= box[3]]
    lines = ctx.source("log").read_bytes().decode().split("\\n")[1:-1]  # a range cuts the last line
    ctx.write_parquet("table", pa.table({"id": [int(r["id"]) for r in rows], "x": [float(r["x"]) for r in rows],
                                         "logged": [len(lines)] * len(rows)}))
'''


class CountingServer:
    """Serves files with `bytes=a-b` Range support; counts the body bytes sent per path.
    `mode` per path: "ok", "no-range" (always 200, whole file), "oversend" (206, a byte too many)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.sent: dict[str, int] = {}
        self.lock = threading.Lock()
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                srv.serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def add(self, path: str, body: bytes, mode: str = "ok") -> str:
        self.files[path], self.mode[path], self.sent[path] = body, mode, 0
        return self.base + path

    def serve(self, h: BaseHTTPRequestHandler) -> None:
        body = self.files.get(h.path)
        if body is None:
            h.send_response(404)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        mode = self.mode[h.path]
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range") or "")
        if m and mode != "no-range":
            start = int(m[1])
            end = min(int(m[2]) if m[2] else len(body) - 1, len(body) - 1)
            part = body[start:end + 1] + (b"x" if mode == "oversend" else b"")
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        else:
            part = body
            h.send_response(200)
        h.send_header("Content-Length", str(len(part)))
        h.end_headers()
        try:
            h.wfile.write(part)
        except OSError:  # the client closed early (it refused the answer): what it read counts
            pass
        with self.lock:
            self.sent[h.path] += len(part)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[CountingServer]:
    srv = CountingServer()
    yield srv
    srv.close()


def _zip() -> bytes:
    """A 3 MiB zip: a big incompressible member, and the small table the sample reads."""
    rng = random.Random(7)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("big.bin", (2020, 1, 1, 0, 0, 0)), rng.randbytes(3 * 2**20))
        table = "id,x,y\n" + "".join(f"{i},{i % 50},{i // 50}\n" for i in range(500))
        z.writestr(zipfile.ZipInfo("places.csv", (2021, 5, 11, 0, 0, 0)), table)
    return buf.getvalue()


def _dataset(repo: Path, srv: CountingServer, sample_sources: list[dict[str, Any]], zip_mode: str = "ok") -> str:
    """A dataset whose two sources sit on `srv`: a zip and a 1 MiB log file."""
    ds = "ca_test_sample-sources"
    folder = repo / "datasets" / ds
    folder.mkdir(parents=True)
    yaml = YAML(typ="safe", pure=True)
    data = yaml.load((repo / "datasets" / TEMPLATE / "recipe.yaml").read_text())
    zipped, log = _zip(), b"when\n" + b"".join(b"2026-01-01T00:00:%02dZ\n" % (i % 60) for i in range(50_000))
    data["id"] = ds
    data["sources"] = [
        {"name": "shapes", "url": srv.add("/shapes.zip", zipped, zip_mode),
         "sha256": hashlib.sha256(zipped).hexdigest(), "size": len(zipped)},
        {"name": "log", "url": srv.add("/log.csv", log), "sha256": hashlib.sha256(log).hexdigest(), "size": len(log)},
    ]
    data["transform"] = {"python": "transform.py:build", "params": {}}
    data["outputs"] = [{"name": "table", "format": "parquet", "sort_by": ["id"], "primary_key": ["id"]}]
    data["sample"] = {"sources": sample_sources}
    with open(folder / "recipe.yaml", "w") as fh:
        yaml.dump(data, fh)
    (folder / "transform.py").write_text(TRANSFORM)
    return ds


SAMPLE: list[dict[str, Any]] = [{"name": "shapes", "members": ["places.csv"], "bbox": [0, 0, 9, 4]},
          {"name": "log", "range": {"start": 0, "length": 4096}}]


def test_sample_build_reads_little_and_is_reproducible(repo_copy: Path, server: CountingServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    ds = _dataset(repo_copy, server, SAMPLE)
    schemas.check("recipe", YAML(typ="safe", pure=True).load((repo_copy / "datasets" / ds / "recipe.yaml").read_text()),
                  what="the recipe")
    out = repo_copy / "out"
    # --check: two builds under varied conditions, artifacts and manifests byte-identical.
    assert main(["build", ds, "--sample", "--check", "--out", str(out)]) == 0
    full = len(server.files["/shapes.zip"]) + len(server.files["/log.csv"])
    served = sum(server.sent.values())
    assert served < 2 * 0.05 * full, (served, full)  # both builds together: under a tenth of one full fetch
    assert server.sent["/log.csv"] == 2 * 4096  # the range and nothing more (the recipe gives the size)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sample"] is True
    facts = {f["name"]: f for f in manifest["sample_sources"]}
    log = server.files["/log.csv"]
    assert facts["log"]["read"] == [[0, 4096, hashlib.sha256(log[:4096]).hexdigest()]]
    assert facts["log"]["sha256"] == hashlib.sha256(log[:4096]).hexdigest()
    assert facts["shapes"]["members"] == ["places.csv"] and facts["shapes"]["bbox"] == [0.0, 0.0, 9.0, 4.0]
    zipped = server.files["/shapes.zip"]
    for start, length, sha in facts["shapes"]["read"]:  # every range read is pinned by its hash
        assert hashlib.sha256(zipped[start:start + length]).hexdigest() == sha
    table = pq.read_table(out / f"{ds}_v1.0.0.parquet")
    assert table.num_rows == 50 and set(table["logged"].to_pylist()) == {(4096 - len("when\n")) // 21}
    with pytest.raises(D4CError, match="is a sample build"):  # never mistaken for a release build
        read_build(recipe.load_id(ds, repo_copy), out)


def _copy_template(repo: Path) -> None:
    (repo / "datasets" / TEMPLATE).mkdir(parents=True)
    src = Path(__file__).parents[1] / "datasets" / TEMPLATE / "recipe.yaml"
    (repo / "datasets" / TEMPLATE / "recipe.yaml").write_bytes(src.read_bytes())


def _spec_error(repo: Path, srv: CountingServer, entry: dict[str, Any]) -> str:
    rec = recipe.load_id(_dataset(repo, srv, [{"name": "shapes", **entry}]), repo)
    with pytest.raises(D4CError) as exc:
        sample.resolve(rec, "auto")
    line = exc.value.line()
    assert "\n" not in line
    return line


@pytest.mark.parametrize(("entry", "said"), [
    ({"range": {"start": -1, "length": 10}}, "start must be >= 0"),
    ({"range": {"start": 0, "length": 0}}, "length 1 to"),
    ({"range": {"start": 10**12, "length": 10}}, "pass the end of the"),
    ({"range": {"start": 0, "length": 10}, "members": ["places.csv"]}, "exclude each other"),
    ({"members": ["../etc/passwd"]}, "without empty, '.' or '..' parts"),
    ({"members": ["/etc/passwd"]}, "without empty, '.' or '..' parts"),
    ({"members": ["a\\..\\b"]}, "backslash"),
    ({"members": ["places.csv", "places.csv"]}, "named twice"),
    ({"members": ["missing.csv"]}, "'missing.csv' is not in the archive"),
    ({"bbox": [5, 0, 1, 1]}, "min <= max"),
    ({"sha256": "0" * 64, "members": ["places.csv"]}, "the recipe pins"),
    ({"name": "nope", "members": ["places.csv"]}, "'nope', which is not a source"),
    ({"bbox": [0, 0, 1, 1], "hack": 1}, "unknown key(s) hack"),
])
def test_hostile_sample_specs_are_refused_in_one_line(tmp_path: Path, server: CountingServer,
                                                      entry: dict[str, Any], said: str) -> None:
    _copy_template(tmp_path)
    assert said in _spec_error(tmp_path, server, entry)


@pytest.mark.parametrize(("mode", "said"), [("no-range", "HTTP 200 to a Range request"),
                                             ("oversend", "sent 4097+ bytes for a 4096-byte range")])
def test_servers_that_ignore_or_overrun_ranges_are_refused(tmp_path: Path, server: CountingServer,
                                                           mode: str, said: str) -> None:
    _copy_template(tmp_path)
    ds = _dataset(tmp_path, server, [{"name": "shapes", "range": {"start": 0, "length": 4096}}], mode)
    with pytest.raises(D4CError) as exc:
        sample.resolve(recipe.load_id(ds, tmp_path), "auto")
    line = exc.value.line()
    assert said in line and "\n" not in line
    assert not list((Path(os.environ["D4C_CACHE"]) / "samples").rglob("*"))  # nothing kept


def test_the_transform_gets_an_extracted_folder_when_the_source_says_extract(
        tmp_path: Path, server: CountingServer) -> None:
    _copy_template(tmp_path)
    rec = recipe.load_id(_dataset(tmp_path, server, [{"name": "shapes", "members": ["places.csv"]}]), tmp_path)
    shapes = replace(rec.sources[0], extract=True)
    rec = replace(rec, sources=(shapes, rec.sources[1]))
    found, facts = sample.resolve(rec, "auto")
    assert sorted(p.name for p in found["shapes"].iterdir()) == ["places.csv"]
    assert facts[0]["size"] is not None and server.sent["/shapes.zip"] < 200_000
