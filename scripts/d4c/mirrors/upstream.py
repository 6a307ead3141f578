"""Signals that a version is at risk although its copies pass: its upstream source has
disappeared or changed, or a retention or takedown date is recorded (docs/mirrors.md).

Each is a row of its own check kind in the health file: `upstream` (tier 2, which reads
the manifests anyway; one per version x source URL of its manifest, mirror `upstream`)
and `retention` (tier 0) (one per version that
records a date). They feed the at-risk signal (d4c.mirrors.health.risks) and never fail
the run: the copies d4c publishes are what the check guards, an upstream is not ours.
"""
from __future__ import annotations

import threading

from d4c.mirrors.checks import Context, Row, _gone, _why, row
from d4c.mirrors.inventory import Artifact, Copy, Version, upstream_sources
from d4c.mirrors.net import Answer

UPSTREAM = "upstream"  # the check kind and the mirror name of an upstream source
RETENTION = "retention"
SIGNALS = (UPSTREAM, RETENTION)  # check kinds that are evidence of risk, not copy verdicts
_NO_HEAD = (405, 501)  # a server that does not answer HEAD: no evidence either way


class Upstream:
    """HEADs each upstream URL once per run, however many versions name it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seen: dict[str, Answer] = {}
        self._lock = threading.Lock()

    def _head(self, url: str) -> Answer:
        with self._lock:
            got = self._seen.get(url)
        if got is None:
            got = self.ctx.net.request("HEAD", url)
            with self._lock:
                self._seen[url] = got
        return got

    def rows(self, version: Version) -> list[Row]:
        out = []
        for src in upstream_sources(self.ctx.net, version):
            url, size = str(src["url"]), src.get("size")
            art = Artifact(version.item_id, version.collection, version.version,
                           f"source-{src.get('name') or ''}", str(src.get("name") or url),
                           int(size) if isinstance(size, int) else 0, str(src.get("sha256") or ""),
                           ("source",), [])
            out.append(self._verdict(art, Copy(UPSTREAM, url), self._head(url),
                                     size if isinstance(size, int) else None))
        return out

    def _verdict(self, art: Artifact, copy: Copy, got: Answer, size: int | None) -> Row:
        ctx, etag = self.ctx, got.header("etag")
        if got.status in _NO_HEAD:
            return row(ctx, 2, UPSTREAM, art, copy, "skipped", f"HTTP {got.status} to HEAD",
                       http_status=got.status)
        gone = _gone(got)
        if gone:  # 404/410 (and 401/403): the upstream no longer serves it
            return row(ctx, 2, UPSTREAM, art, copy, gone, f"upstream: {_why(got)}",
                       http_status=got.status)
        length = got.header("content-length")
        if size is not None and length and length.isdigit() and int(length) != size:
            return row(ctx, 2, UPSTREAM, art, copy, "changed",
                       f"upstream Content-Length {length}, the build read {size} bytes",
                       etag=etag, http_status=got.status)
        before = (ctx.baseline or {}).get(copy.href)
        if etag and before and etag != before:
            return row(ctx, 2, UPSTREAM, art, copy, "changed", f"upstream ETag {etag}, was {before}",
                       etag=etag, http_status=got.status)
        return row(ctx, 2, UPSTREAM, art, copy, "ok",
                   f"HTTP {got.status}, Content-Length {length}", etag=etag, http_status=got.status)


def retention_row(ctx: Context, version: Version) -> list[Row]:
    """One row when the version records a keep-until or takedown date."""
    if version.retention is None:
        return []
    until, reason = version.retention
    when = "passed" if until < ctx.date else "until"
    art = Artifact(version.item_id, version.collection, version.version, RETENTION, "", 0, "",
                   (RETENTION,), [])
    return [row(ctx, 0, RETENTION, art, None, "warning",
                f"retention {when} {until}" + (f": {reason}" if reason else ""))]
