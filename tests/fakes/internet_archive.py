"""A fake Internet Archive: the IA-S3 write API plus the public metadata/download read path.

- `PUT /{identifier}/{file}` with `Authorization: LOW access:secret` (403 otherwise);
- `GET /` with the same header lists the caller's items (ListAllMyBuckets; 403 otherwise);
  a missing item answers 404 NoSuchBucket unless `x-archive-auto-make-bucket: 1`;
  `x-archive-meta-<key>` / `x-archive-metaNN-<key>` headers (values ASCII, or
  `uri(<percent-encoded>)`) apply only when the item is created; `Content-MD5` is checked
  (400 BadDigest); `x-archive-queue-derive` is recorded;
- under load (`put_rate` PUTs per second) a PUT answers 503 SlowDown with Retry-After;
- `redirect=True`: a PUT is first answered 307 to a storage node (`/_node/...`), as IA does;
- `GET /metadata/{identifier}` gives `{}` for no item, else the item's files with md5,
  sha1 and size (strings), including IA's own `_meta.xml` / `_files.xml`; with
  `lag_reads=n` a new file shows there only after n reads (IA's tasks run later);
- `GET /download/{identifier}/{file}` serves the bytes (Range answered with 206).
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
from typing import Any
from urllib.parse import unquote

from . import FakeServer, Request, Response, json_response

_META = re.compile(r"^x-archive-meta(\d*)-(.+)$")


def _xml_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return Response(status, body.encode(), {"Content-Type": "application/xml", **(headers or {})})


class FakeInternetArchive(FakeServer):
    def __init__(self, access: str, secret: str, *, put_rate: float | None = None,
                 redirect: bool = False, lag_reads: int = 0) -> None:
        super().__init__()
        self.auth = f"LOW {access}:{secret}"
        self.put_rate, self.redirect, self.lag_reads = put_rate, redirect, lag_reads
        self.items: dict[str, dict[str, Any]] = {}  # identifier -> {"metadata", "files", "headers"}
        self._puts: list[float] = []
        self.route("GET", r"/", self._my_items)
        self.route("GET", r"/metadata/(?P<item>[^/]+)", self._metadata)
        self.route("GET", r"/download/(?P<item>[^/]+)/(?P<file>.+)", self._download)
        self.route("PUT", r"/(?P<node>_node/)?(?P<item>[^/_][^/]*)/(?P<file>.+)", self._put)
        self.route("DELETE", r"/(?P<item>[^/_][^/]*)/(?P<file>.+)", self._delete)

    def _my_items(self, req: Request) -> Response:
        """IA-S3 `GET /` with the keys: the caller's items (S3 ListAllMyBuckets), 403 without."""
        if req.headers.get("authorization") != self.auth:
            return _xml_error(403, "AccessDenied", "Access Denied")
        names = "".join(f"<Bucket><Name>{n}</Name></Bucket>" for n in sorted(self.items))
        body = f"<?xml version='1.0' encoding='UTF-8'?><ListAllMyBucketsResult><Buckets>{names}</Buckets></ListAllMyBucketsResult>"
        return Response(200, body.encode(), {"Content-Type": "application/xml"})

    def _put(self, req: Request) -> Response:
        if req.headers.get("authorization") != self.auth:
            return _xml_error(403, "AccessDenied", "Access Denied")
        now = time.monotonic()
        self._puts = [t for t in self._puts if now - t < 1.0]
        if self.put_rate is not None and len(self._puts) >= self.put_rate:
            return _xml_error(503, "SlowDown", "Please reduce your request rate.", {"Retry-After": "1"})
        self._puts.append(now)
        if self.redirect and not req.params.get("node"):
            return Response(307, b"", {"Location": f"{self.url}/_node{req.raw_path}"})
        ident, name = req.params["item"], req.params["file"]
        item = self.items.get(ident)
        if item is None and req.headers.get("x-archive-auto-make-bucket") != "1":
            return _xml_error(404, "NoSuchBucket", "The specified bucket does not exist.")
        md5 = hashlib.md5(req.body)
        want = req.headers.get("content-md5")
        if want is not None and base64.b64decode(want) != md5.digest():
            return _xml_error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        if item is None:  # metadata headers count only when the item is created
            item = self.items[ident] = {"metadata": {"identifier": ident, **_meta(req.headers)},
                                        "files": {}, "puts": []}
        item["files"][name] = {"data": req.body, "reads_left": self.lag_reads}
        item["puts"].append({k: v for k, v in req.headers.items() if k.startswith("x-archive-")})
        return Response(200, b"", {"ETag": f'"{md5.hexdigest()}"'})

    def _delete(self, req: Request) -> Response:
        if req.headers.get("authorization") != self.auth:
            return _xml_error(403, "AccessDenied", "Access Denied")
        item = self.items.get(req.params["item"])
        if item is not None:
            item["files"].pop(req.params["file"], None)
        return Response(204)

    def _metadata(self, req: Request) -> Response:
        ident = req.params["item"]
        item = self.items.get(ident)
        if item is None:
            return json_response(200, {})
        files = []
        for name, f in sorted(item["files"].items()):
            if f["reads_left"] > 0:  # the archive task has not run yet
                f["reads_left"] -= 1
                continue
            data = f["data"]
            files.append({"name": name, "source": "original", "size": str(len(data)),
                          "md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest(),
                          "mtime": "1767225600"})
        files += [{"name": f"{ident}_meta.xml", "source": "metadata", "format": "Metadata"},
                  {"name": f"{ident}_files.xml", "source": "metadata", "format": "Metadata"}]
        return json_response(200, {"created": 1767225600, "dir": f"/1/items/{ident}", "files": files,
                                   "metadata": item["metadata"], "server": "127.0.0.1",
                                   "item_size": sum(len(f["data"]) for f in item["files"].values())})

    def _download(self, req: Request) -> Response:
        item = self.items.get(req.params["item"])
        f = item["files"].get(req.params["file"]) if item else None
        if f is None:
            return Response(404, b"Item or file not found")
        data = f["data"]
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("range", ""))
        if m:
            start, end = int(m[1]), int(m[2]) if m[2] else len(data) - 1
            return Response(206, data[start:end + 1], {
                "Content-Range": f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}",
                "Accept-Ranges": "bytes"})
        return Response(200, data, {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"})


def _meta(headers: dict[str, str]) -> dict[str, Any]:
    """x-archive-meta[NN]-key headers -> metadata; NN-numbered ones make lists."""
    out: dict[str, Any] = {}
    for name, value in sorted(headers.items()):
        m = _META.match(name)
        if not m:
            continue
        key = m[2].replace("--", "_")  # IA spells underscores in header names as "--"
        if value.startswith("uri(") and value.endswith(")"):
            value = unquote(value[4:-1])
        if m[1]:
            out.setdefault(key, []).append(value)
        else:
            out[key] = value
    return out
