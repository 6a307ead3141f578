"""Shared pieces for the mirror health tests (no tests here): a local HTTP mirror with
Range, ETags, CORS and fault modes, and a world of real copies on four mirrors (that
mirror, a moto S3 bucket, the Zenodo fake, the Internet Archive fake) described by a real
release record and a catalog built from it with the catalog code.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from d4c.digest import digest_file

ID, VERSION = "ca_test_health", "1.0.0"
PIECE = 16 * 1024  # the smallest BitTorrent piece size: 16 pieces in a 256 KiB file
SIZE = 16 * PIECE


class HttpMirror:
    """A static file server over a folder: HEAD and GET with Range (206), an ETag from size
    and mtime (as nginx makes one), CORS for any origin. `lie[path] = bytes` answers that
    body with 200 instead of the file (a server that serves an error page as 200);
    `status[path] = 410` answers that status (a file its server says is gone)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lie: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.requests: list[tuple[str, str]] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits ~40 ms on delayed ACKs

            def log_message(self, *args: Any) -> None:
                return None

            def _serve(self) -> None:
                mirror.requests.append((self.command, self.path))
                path = unquote(self.path.split("?", 1)[0])
                if path in mirror.status:
                    return self._send(mirror.status[path], b"gone", {})
                if path in mirror.lie:
                    return self._send(200, mirror.lie[path], {})
                file = mirror.root / path.lstrip("/")
                if not file.is_file() or ".." in path:
                    return self._send(404, b"not found", {})
                st = file.stat()
                data = file.read_bytes()
                headers = {"ETag": f'"{st.st_size:x}-{st.st_mtime_ns:x}"', "Accept-Ranges": "bytes"}
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if m:
                    start, end = int(m[1]), min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    return self._send(206, data[start:end + 1], headers)
                return self._send(200, data, headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in {**headers, "Access-Control-Allow-Origin": "*"}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def artifact_bytes(seed: str, size: int = SIZE) -> bytes:
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{n}".encode()).digest()
        n += 1
    return bytes(out[:size])


def make_files(folder: Path, trackers: tuple[str, ...] = (),
               sources: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
    """The release's files (data, its torrent, the manifest) with real digests."""
    import torf

    folder.mkdir(parents=True, exist_ok=True)
    base = f"{ID}_v{VERSION}"
    data = folder / f"{base}.parquet"
    data.write_bytes(artifact_bytes(base))
    d = digest_file(data, PIECE)
    output = {"name": "table", "file": data.name, "format": "parquet",
              "media_type": "application/vnd.apache.parquet", "size": d.size, "sha256": d.sha256,
              "md5": d.md5, "piece_size": d.piece_size, "pieces_sha1": d.pieces.hex(), "rows": 1,
              "columns": [], "schema_fingerprint": "0" * 64, "logical_sha256": "0" * 64,
              "geometry_types": [], "crs": None, "bbox": None}
    manifest = {"manifest_version": 1, "dataset": {"id": ID, "version": VERSION}, "outputs": [output],
                "sources": list(sources), "params": {}, "environment": {"python": "3.11.7", "packages": {}}}
    mfile = folder / f"{base}_manifest.json"
    mfile.write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    t = torf.Torrent(path=data, trackers=list(trackers) or None, private=False, created_by=None,
                     creation_date=None, piece_size=PIECE)
    t.generate()
    tfile = folder / f"{data.name}.torrent"
    tfile.write_bytes(t.dump())
    files = []
    for role, name, path, media in (("data", "table", data, output["media_type"]),
                                    ("torrent", "table", tfile, "application/x-bittorrent"),
                                    ("manifest", "manifest", mfile, "application/json")):
        raw = path.read_bytes()
        files.append({"role": role, "name": name, "file": path.name, "size": len(raw),
                      "sha256": hashlib.sha256(raw).hexdigest(), "md5": hashlib.md5(raw).hexdigest(),
                      "media_type": media, "path": path, "urls": {}})
    files[0]["manifest"] = manifest
    return files


class World:
    """Copies of one release on four mirrors, and its catalog."""

    def __init__(self, tmp: Path, s3: Any, zenodo: Any, ia: Any, *, trackers: tuple[str, ...] = (),
                 mirrors: tuple[str, ...] = ("http", "s3", "zenodo", "ia"),
                 sources: tuple[dict[str, Any], ...] = (), metadata: dict[str, Any] | None = None) -> None:
        import base64

        self.tmp, self.s3, self.zenodo, self.ia = tmp, s3, zenodo, ia
        self.files = make_files(tmp / "build", trackers, sources)
        self.manifest = self.files[0].pop("manifest")
        self.http = HttpMirror(tmp / "www")
        self.bucket = s3.bucket("health", public=True) if "s3" in mirrors else ""
        zen_id = str(900 + len(zenodo.records)) if "zenodo" in mirrors else ""
        ident = f"{ID}_v{VERSION}-{os.getpid()}-{len(ia.items)}" if "ia" in mirrors else ""
        zfiles = {}
        for f in self.files:
            raw = f["path"].read_bytes()
            key = f"{ID}/v{VERSION}/{f['file']}"
            if "http" in mirrors:
                dest = tmp / "www" / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(raw)
                f["urls"]["http"] = f"{self.http.url}/{key}"
            if "s3" in mirrors:
                s3.client().put_object(Bucket=self.bucket, Key=key, Body=raw,
                                       Metadata={"sha256": f["sha256"], "md5": f["md5"], "size": str(len(raw))},
                                       ChecksumAlgorithm="SHA256",
                                       ChecksumSHA256=base64.b64encode(bytes.fromhex(f["sha256"])).decode())
                f["urls"]["s3"] = f"{s3.endpoint}/{self.bucket}/{key}"
            if "zenodo" in mirrors:
                from fakes.zenodo import _File

                zfiles[f["file"]] = _File(f["file"], raw, "completed")
                f["urls"]["zenodo"] = f"{zenodo.url}/records/{zen_id}/files/{f['file']}?download=1"
            if "ia" in mirrors:
                item = ia.items.setdefault(ident, {"metadata": {"identifier": ident}, "files": {}, "puts": []})
                item["files"][f["file"]] = {"data": raw, "reads_left": 0}
                f["urls"]["ia"] = f"{ia.url}/download/{ident}/{f['file']}"
        if "zenodo" in mirrors:
            from fakes.zenodo import _Record

            zenodo.parents[zen_id + "p"] = {"doi": None, "next_draft": None}
            zenodo.records[zen_id] = _Record(id=zen_id, parent=zen_id + "p", metadata={}, files=zfiles,
                                             published=True)
        self.zen_id, self.ident = zen_id, ident
        self.record = {
            "record_version": 1, "id": ID, "version": VERSION, "released_at": "2026-11-26T00:00:00Z",
            "manifest": self.manifest,
            "metadata": {"title": {"en": "Health test"}, "description": {"en": "Copies to check"},
                         "license": "CC0-1.0", "spatial": {"bbox": [-141.0, 41.7, -52.6, 83.1]},
                         **(metadata or {})},
            "doi": None, "concept_doi": None, "github_release": None, "bundle_sha256": "0" * 64,
            "targets": {}, "mirrors": [{"name": m, "retain": "all"} for m in mirrors],
            "files": [{k: v for k, v in f.items() if k != "path"} for f in self.files],
            "torrents": [], "sources": []}
        self.catalog = tmp / "catalog.parquet"
        from d4c.catalog import build_catalog

        build_catalog([self.record], self.catalog, metadata=lambda r: r["metadata"])

    @property
    def data(self) -> dict[str, Any]:
        return self.files[0]

    def key(self, f: dict[str, Any] | None = None) -> str:
        return f"{ID}/v{VERSION}/{(f or self.data)['file']}"

    def close(self) -> None:
        self.http.close()
