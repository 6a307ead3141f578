"""A fake Zenodo (InvenioRDM REST API) faithful to the documented behaviour we rely on.

- `POST /api/records` creates a draft; `PUT /api/records/{id}/draft` replaces its metadata;
  `DELETE /api/records/{id}/draft` discards an unpublished draft;
- files in three steps: `POST /draft/files` with `[{"key": ...}]` (400 if the key exists),
  `PUT /draft/files/{key}/content`, `POST /draft/files/{key}/commit` (then the entry
  reports `checksum: "md5:<hex>"`);
- `POST /draft/pids/doi` reserves a DOI (400 when one is already there);
- `POST /draft/actions/publish` answers 202 (400 without files or with pending ones);
- `POST /api/records/{id}/versions` makes a new-version draft that starts with NO files
  (`POST /draft/actions/files-import` links the previous ones); only one such draft
  at a time: asking again returns the same draft;
- `GET /api/records/{id}/versions[/latest]` (latest: 200 with the record); a record's
  JSON says only `files.enabled`: its entries come from `GET /api/records/{id}/files`;
- `GET /api/records?q=...` (anyone: published records only) and `GET /api/user/records?q=...` (the user's drafts and records; `q` supports `field:"value"` terms joined by AND; with `search_lag`
  a new draft shows in search only that many seconds after it was made, as on Zenodo);
- limits: 100 files and 50 GB per record (configurable); `X-RateLimit-*` headers and 429
  with Retry-After past the limit; Bearer token auth.
Published files are served at `/records/{id}/files/{key}` (the web-seed form; Range answered with 206).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from . import FakeServer, Request, Response, json_response

ID = r"(?P<id>\d+)"
KEY = r"(?P<key>[^/]+)"


@dataclass
class _File:
    key: str
    data: bytes | None = None
    status: str = "pending"

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "status": self.status}
        if self.status == "completed" and self.data is not None:
            out.update(size=len(self.data), checksum="md5:" + hashlib.md5(self.data).hexdigest())
        return out


@dataclass
class _Record:
    id: str
    parent: str
    metadata: dict[str, Any]
    files: dict[str, _File] = field(default_factory=dict)
    published: bool = False
    doi: str | None = None
    index: int = 0
    indexed_at: float = 0.0  # when the search index sees it


class FakeZenodo(FakeServer):
    def __init__(self, token: str, *, max_files: int = 100, max_bytes: int = 50 * 10**9,
                 rate_limit: int = 10_000, rate_window: float = 60.0,
                 doi_prefix: str = "10.5072", search_lag: float = 0.0) -> None:
        super().__init__()
        self.token, self.max_files, self.max_bytes = token, max_files, max_bytes
        self.rate_limit, self.rate_window, self.doi_prefix = rate_limit, rate_window, doi_prefix
        self.search_lag = search_lag  # the search index trails writes (about 1 s on Zenodo)
        self.records: dict[str, _Record] = {}
        self.parents: dict[str, dict[str, Any]] = {}  # id -> {"doi", "next_draft"}
        self._next_id = 100
        self._window: list[float] = []
        api, d = "/api/records", f"/api/records/{ID}/draft"
        for method, pattern, handler in [
            ("POST", api, self._create), ("GET", f"{api}/{ID}", self._get_record),
            ("GET", d, self._get_draft), ("PUT", d, self._put_draft), ("DELETE", d, self._discard),
            ("POST", f"{d}/pids/doi", self._reserve_doi),
            ("GET", f"{d}/files", self._list_files), ("POST", f"{d}/files", self._init_files),
            ("GET", f"{d}/files/{KEY}", self._get_file), ("DELETE", f"{d}/files/{KEY}", self._del_file),
            ("PUT", f"{d}/files/{KEY}/content", self._put_content),
            ("GET", f"{d}/files/{KEY}/content", self._get_draft_content),
            ("POST", f"{d}/files/{KEY}/commit", self._commit),
            ("POST", f"{d}/actions/publish", self._publish),
            ("POST", f"{d}/actions/files-import", self._files_import),
            ("POST", f"{api}/{ID}/versions", self._new_version),
            ("GET", f"{api}/{ID}/versions", self._versions),
            ("GET", f"{api}/{ID}/versions/latest", self._latest),
            ("GET", "/api/user/records", self._search),
            ("GET", api, self._public_search),
            ("GET", f"{api}/{ID}/files", self._record_files),
            ("GET", f"{api}/{ID}/files/{KEY}/content", self._download),
            ("GET", f"/records/{ID}/files/{KEY}", self._download),
        ]:
            self.route(method, pattern, handler)

    # -- plumbing: auth and rate limits, applied before routing ---------------------------
    def _handle(self, req: Request) -> Response:
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < self.rate_window]
        if len(self._window) >= self.rate_limit:
            wait = max(1, math.ceil(self.rate_window - (now - self._window[0])))
            return json_response(429, {"status": 429, "message": "Too many requests"},
                                 {"Retry-After": str(wait), **self._rl_headers(now)})
        self._window.append(now)
        public = req.method == "GET" and bool(re.match(rf"^(/api/records(/{ID}(/files(/.*)?)?)?|/records/.*)$", req.path))
        if not public and req.headers.get("authorization") != f"Bearer {self.token}":
            resp = json_response(403 if "authorization" in req.headers else 401,
                                 {"status": 401, "message": "The server could not verify that you are authorized."})
        else:
            resp = super()._handle(req)
        resp.headers.update(self._rl_headers(now))
        return resp

    def _rl_headers(self, now: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(0, self.rate_limit - len(self._window))),
                "X-RateLimit-Reset": str(int(time.time() + self.rate_window))}

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def _json(self, rec: _Record) -> dict[str, Any]:
        parent = self.parents[rec.parent]
        versions = [r for r in self.records.values() if r.parent == rec.parent and r.published]
        latest = max(versions, key=lambda r: r.index) if versions else None
        base = f"{self.url}/api/records/{rec.id}"
        return {
            "id": rec.id, "recid": rec.id, "conceptrecid": rec.parent,
            "parent": {"id": rec.parent, "pids": {"doi": {"identifier": parent["doi"]}} if parent["doi"] else {}},
            "pids": {"doi": {"identifier": rec.doi, "provider": "datacite"}} if rec.doi else {},
            "doi": rec.doi, "metadata": rec.metadata,
            "files": {"enabled": True, "order": []},  # entries: GET .../files (as documented)
            "is_published": rec.published, "is_draft": not rec.published,
            "status": "published" if rec.published else ("new_version_draft" if versions else "draft"),
            "versions": {"index": rec.index, "is_latest": latest is rec,
                         "is_latest_draft": parent["next_draft"] == rec.id},
            "links": {"self": base, "draft": f"{base}/draft", "files": f"{base}/draft/files",
                      "self_html": f"{self.url}/records/{rec.id}", "latest": f"{base}/versions/latest"},
        }

    def _rec(self, req: Request, *, draft: bool) -> _Record | Response:
        rec = self.records.get(req.params["id"])
        if rec is None or rec.published == draft:
            return json_response(404, {"status": 404, "message": "The persistent identifier does not exist."})
        return rec

    @staticmethod
    def _error(message: str, status: int = 400) -> Response:
        return json_response(status, {"status": status, "message": message})

    # -- drafts ---------------------------------------------------------------------------
    def _create(self, req: Request) -> Response:
        body = req.json() or {}
        parent = self._new_id()
        self.parents[parent] = {"doi": None, "next_draft": None}
        rec = _Record(self._new_id(), parent, dict(body.get("metadata") or {}), index=1,
                      indexed_at=time.monotonic() + self.search_lag)
        self.records[rec.id] = rec
        self.parents[parent]["next_draft"] = rec.id
        return json_response(201, self._json(rec))

    def _get_draft(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        return rec if isinstance(rec, Response) else json_response(200, self._json(rec))

    def _get_record(self, req: Request) -> Response:
        rec = self._rec(req, draft=False)
        return rec if isinstance(rec, Response) else json_response(200, self._json(rec))

    def _put_draft(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        if isinstance(rec, Response):
            return rec
        rec.metadata = dict((req.json() or {}).get("metadata") or {})
        return json_response(200, self._json(rec))

    def _discard(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        if isinstance(rec, Response):
            return rec
        del self.records[rec.id]  # an unpublished draft disappears with its files
        if self.parents[rec.parent]["next_draft"] == rec.id:
            self.parents[rec.parent]["next_draft"] = None
        return Response(204)

    def _reserve_doi(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        if isinstance(rec, Response):
            return rec
        if rec.doi:
            return self._error("A PID already exists for type doi")
        rec.doi = f"{self.doi_prefix}/zenodo.{rec.id}"
        return json_response(201, self._json(rec))

    # -- files ----------------------------------------------------------------------------
    def _files_json(self, rec: _Record) -> dict[str, Any]:
        return {"enabled": True, "entries": [f.entry() for f in rec.files.values()]}

    def _list_files(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        return rec if isinstance(rec, Response) else json_response(200, self._files_json(rec))

    def _init_files(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        if isinstance(rec, Response):
            return rec
        keys = [str(item["key"]) for item in req.json() or []]
        for key in keys:
            if key in rec.files:
                return self._error(f"File with key {key} already exists.")
        if len(rec.files) + len(keys) > self.max_files:
            return self._error(f"Too many files (limit {self.max_files}).")
        for key in keys:
            rec.files[key] = _File(key)
        return json_response(201, self._files_json(rec))

    def _file(self, req: Request) -> tuple[_Record, _File] | Response:
        rec = self._rec(req, draft=True)
        if isinstance(rec, Response):
            return rec
        f = rec.files.get(req.params["key"])
        return (rec, f) if f else self._error(f"File {req.params['key']} not found", 404)

    def _get_file(self, req: Request) -> Response:
        got = self._file(req)
        return got if isinstance(got, Response) else json_response(200, got[1].entry())

    def _del_file(self, req: Request) -> Response:
        got = self._file(req)
        if isinstance(got, Response):
            return got
        del got[0].files[got[1].key]
        return Response(204)

    def _put_content(self, req: Request) -> Response:
        got = self._file(req)
        if isinstance(got, Response):
            return got
        rec, f = got
        used = sum(len(o.data or b"") for o in rec.files.values() if o is not f)
        if used + len(req.body) > self.max_bytes:
            return self._error("Quota exceeded for this record.")
        f.data, f.status = req.body, "pending"
        return json_response(200, f.entry())

    def _get_draft_content(self, req: Request) -> Response:
        got = self._file(req)
        if isinstance(got, Response):
            return got
        return Response(200, got[1].data or b"", {"Content-Type": "application/octet-stream"})

    def _commit(self, req: Request) -> Response:
        got = self._file(req)
        if isinstance(got, Response):
            return got
        if got[1].data is None:
            return self._error("File has no content.")
        got[1].status = "completed"
        return json_response(200, got[1].entry())

    # -- publish and versions -------------------------------------------------------------
    def _publish(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        if isinstance(rec, Response):
            return rec
        missing = [k for k in ("title", "creators", "publication_date", "resource_type")
                   if not rec.metadata.get(k)]
        if missing:
            return self._error(f"Missing data for required field(s): {', '.join(missing)}.")
        if not rec.files:
            return self._error("Missing uploaded files. To disable files for this record please mark it as metadata-only.")
        if any(f.status != "completed" for f in rec.files.values()):
            return self._error("Files must be committed before publishing.")
        parent = self.parents[rec.parent]
        rec.doi = rec.doi or f"{self.doi_prefix}/zenodo.{rec.id}"
        parent["doi"] = parent["doi"] or f"{self.doi_prefix}/zenodo.{rec.parent}"
        parent["next_draft"] = None
        rec.published = True
        return json_response(202, self._json(rec))

    def _new_version(self, req: Request) -> Response:
        src = self._rec(req, draft=False)
        if isinstance(src, Response):
            return src
        parent = self.parents[src.parent]
        if parent["next_draft"]:  # only one new-version draft at a time: hand back that one
            return json_response(201, self._json(self.records[parent["next_draft"]]))
        meta = {k: v for k, v in src.metadata.items() if k not in ("publication_date", "version")}
        top = max(r.index for r in self.records.values() if r.parent == src.parent)
        rec = _Record(self._new_id(), src.parent, meta, index=top + 1,  # starts with NO files
                      indexed_at=time.monotonic() + self.search_lag)
        self.records[rec.id] = rec
        parent["next_draft"] = rec.id
        return json_response(201, self._json(rec))

    def _files_import(self, req: Request) -> Response:
        rec = self._rec(req, draft=True)
        if isinstance(rec, Response):
            return rec
        prev = [r for r in self.records.values() if r.parent == rec.parent and r.published]
        if not prev:
            return self._error("No previous version to import files from.")
        src = max(prev, key=lambda r: r.index)
        rec.files = {k: _File(k, f.data, "completed") for k, f in src.files.items()}
        return json_response(201, self._files_json(rec))

    def _versions(self, req: Request) -> Response:
        rec = self.records.get(req.params["id"])
        if rec is None:
            return self._error("The persistent identifier does not exist.", 404)
        hits = [self._json(r) for r in self.records.values() if r.parent == rec.parent and r.published]
        return json_response(200, {"hits": {"hits": hits, "total": len(hits)}})

    def _latest(self, req: Request) -> Response:
        rec = self.records.get(req.params["id"])
        pub = [r for r in self.records.values() if rec and r.parent == rec.parent and r.published]
        if not pub:
            return self._error("The persistent identifier does not exist.", 404)
        return json_response(200, self._json(max(pub, key=lambda r: r.index)))

    def _public_search(self, req: Request) -> Response:
        """`GET /api/records?q=`: anyone may search the published records (never drafts)."""
        resp = self._search(req)
        if resp.status == 200:
            found = json.loads(resp.body)["hits"]["hits"]
            hits = [h for h in found if self.records[str(h["id"])].published]
            resp = json_response(200, {"hits": {"hits": hits, "total": len(hits)}})
        return resp

    def _search(self, req: Request) -> Response:
        terms = re.findall(r'([\w.]+):"((?:[^"\\]|\\.)*)"', req.query.get("q", ""))
        rest = re.sub(r'([\w.]+):"((?:[^"\\]|\\.)*)"|\bAND\b|\s', "", req.query.get("q", ""))
        if rest:
            return self._error(f"Unsupported query syntax: {rest!r}")
        now = time.monotonic()
        hits = [self._json(r) for r in self.records.values() if r.indexed_at <= now
                and all(_matches(self._json(r), f.split("."), v.replace('\\"', '"')) for f, v in terms)]
        return json_response(200, {"hits": {"hits": hits, "total": len(hits)}})

    def _record_files(self, req: Request) -> Response:
        rec = self._rec(req, draft=False)
        return rec if isinstance(rec, Response) else json_response(200, self._files_json(rec))

    def _download(self, req: Request) -> Response:
        rec = self._rec(req, draft=False)
        if isinstance(rec, Response):
            return rec
        f = rec.files.get(req.params["key"])
        if f is None or f.data is None:
            return self._error("File not found", 404)
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("range", ""))
        if m:  # Zenodo's file server answers Range requests (BitTorrent web seeds use them)
            start, end = int(m[1]), int(m[2]) if m[2] else len(f.data) - 1
            return Response(206, f.data[start:end + 1], {
                "Content-Range": f"bytes {start}-{min(end, len(f.data) - 1)}/{len(f.data)}",
                "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"})
        return Response(200, f.data, {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"})

    # -- test helpers ---------------------------------------------------------------------
    def published(self) -> list[_Record]:
        return [r for r in self.records.values() if r.published]

    def drafts(self) -> list[_Record]:
        return [r for r in self.records.values() if not r.published]


def _matches(node: Any, path: list[str], value: str) -> bool:
    """Elasticsearch-style dotted field match: lists are searched element by element."""
    if isinstance(node, list):
        return any(_matches(item, path, value) for item in node)
    if not path:
        return str(node) == value
    return isinstance(node, dict) and _matches(node.get(path[0]), path[1:], value)
