"""The checks of each tier, each giving rows (one per artifact x copy x check).

Statuses: `ok`; `missing` (404/410, or no file); `refused` (401/403: a read policy or
permission, not a lost copy); `corrupt` (wrong length, a checksum, a
piece or the sha256 differs); `unreachable` (no answer, or 5xx after the retries);
`changed` (the ETag differs from the last health file's: re-hashed by tier 3);
`warning` (works, but e.g. no Range or no CORS); `skipped` (not checkable here, or over
the budget). `missing`, `refused`, `corrupt`, `unreachable` and an unresolved `changed` fail the run.
"""
from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from d4c.mirrors.inventory import Artifact, Copy, Version, output_facts
from d4c.mirrors.net import Answer, Net, file_path, host_of

FAILING = frozenset({"missing", "refused", "corrupt", "unreachable"})
ORIGIN = "https://dataforcanada.org"  # the Origin sent to see CORS headers

Row = dict[str, Any]


@dataclass
class Context:
    net: Net
    date: str  # YYYY-MM-DD: the public seed of tier 2 and tier 3's sample
    now: str   # RFC 3339 time of the run
    pieces: int = 4  # k: pieces per copy in tier 2
    baseline: dict[str, str] | None = None  # href -> ETag from the last health file


def row(ctx: Context, tier: int, check: str, art: Artifact | None, copy: Copy | None,
        status: str, evidence: str, **more: Any) -> Row:
    return {
        "date": ctx.date, "checked_at": ctx.now, "tier": tier, "check": check,
        "collection": art.collection if art else None, "version": art.version if art else None,
        "item_id": art.item_id if art else None, "asset": art.asset if art else None,
        "role": art.roles[0] if art and art.roles else None,
        "file": art.file if art else None, "sha256": art.sha256 if art else None,
        "size": art.size if art else None, "mirror": copy.mirror if copy else None,
        "href": copy.href if copy else None, "host": host_of(copy.href) if copy else None,
        "status": status, "evidence": evidence, "etag": more.get("etag"),
        "http_status": more.get("http_status"), "bytes_read": int(more.get("bytes_read") or 0),
    }


def _gone(got: Answer) -> str | None:
    """The status of an answer that is not a usable 200/206, else None."""
    if got.status == 0:
        return "unreachable"
    if got.status in (404, 410):
        return "missing"
    if got.status >= 500 or got.status == 429:
        return "unreachable"
    if got.status in (401, 403):
        return "refused"  # a policy or permission denies the read; not a lost copy
    if got.status >= 400:
        return "missing"
    return None


def _why(got: Answer) -> str:
    return got.error or f"HTTP {got.status}"


# -- service checksums: one metadata request per record, shared by its files --------------

_ZENODO = re.compile(r"^(?P<base>https?://[^?#]+?)/records/(?P<id>\d+)/files/(?P<key>[^?#]+)")
# The Internet Archive's `/download/` is at the root of its host: a GitHub release asset
# (`<repo>/releases/download/<id>/v<version>/<file>`) or a store key with `download/` in it
# is no IA file (it was looked up as one, and every GitHub copy was "missing").
_IA = re.compile(r"^(?P<base>https?://[^/?#]+)/download/(?P<ident>[^/]+)/(?P<file>[^?#]+)")


class ServiceChecksums:
    """md5/sha1 that Zenodo (`GET /api/records/{id}/files`) and the Internet Archive
    (`GET /metadata/{identifier}`) report for their files, cached per record."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self._cache: dict[str, dict[str, dict[str, str]]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _listing(self, url: str, parse: Callable[[Any], dict[str, dict[str, str]]]) -> dict[str, dict[str, str]]:
        with self._lock:
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:
            if url not in self._cache:
                got = self.net.request("GET", url)
                try:
                    import json

                    self._cache[url] = parse(json.loads(got.body)) if got.status == 200 else {}
                except (ValueError, TypeError, KeyError, AttributeError):
                    self._cache[url] = {}
            return self._cache[url]

    def lookup(self, href: str) -> tuple[str, dict[str, str]] | None:
        """(service, {"md5", "sha1", "size"}) for a Zenodo or IA file URL, else None."""
        from urllib.parse import unquote

        m = _ZENODO.match(href)
        if m:
            files = self._listing(f"{m['base']}/api/records/{m['id']}/files", _zenodo_files)
            return "zenodo", files.get(unquote(m["key"]), {})
        m = _IA.match(href)
        if m:
            files = self._listing(f"{m['base']}/metadata/{m['ident']}", _ia_files)
            return "internet-archive", files.get(unquote(m["file"]), {})
        return None


def _zenodo_files(doc: Any) -> dict[str, dict[str, str]]:
    out = {}
    for e in doc.get("entries") or []:
        checksum = str(e.get("checksum") or "")
        facts = {"size": str(e.get("size", ""))}
        if checksum.startswith("md5:"):
            facts["md5"] = checksum[4:]
        out[str(e["key"])] = facts
    return out


def _ia_files(doc: Any) -> dict[str, dict[str, str]]:
    return {str(f["name"]): {k: str(f[k]) for k in ("md5", "sha1", "size") if f.get(k)}
            for f in doc.get("files") or []}


# -- tier 1 ------------------------------------------------------------------------------

def tier1(ctx: Context, services: ServiceChecksums, version: Version, art: Artifact,
          copy: Copy) -> list[Row]:
    """HEAD: status, length, ETag against the baseline, Range and CORS, the mirror's checksums."""
    local = file_path(copy.href)
    if local is not None:
        if not local.is_file():
            return [row(ctx, 1, "head", art, copy, "missing", f"no file {local}")]
        size = local.stat().st_size
        if size != art.size:
            return [row(ctx, 1, "head", art, copy, "corrupt", f"size {size}, expected {art.size}")]
        return [row(ctx, 1, "head", art, copy, "ok", f"size {size}")]
    got = ctx.net.request("HEAD", copy.href, headers={"Origin": ORIGIN, "x-amz-checksum-mode": "ENABLED"})
    etag = got.header("etag")
    bad = _gone(got)
    if bad:
        return [row(ctx, 1, "head", art, copy, bad, _why(got), http_status=got.status)]
    rows = []
    length = got.header("content-length")
    if length is None or not length.isdigit():
        rows.append(row(ctx, 1, "head", art, copy, "warning", "no Content-Length", etag=etag,
                        http_status=got.status))
    elif int(length) != art.size:
        rows.append(row(ctx, 1, "head", art, copy, "corrupt",
                        f"Content-Length {length}, expected file:size {art.size}", etag=etag,
                        http_status=got.status))
    else:
        rows.append(row(ctx, 1, "head", art, copy, "ok", f"HTTP {got.status}, Content-Length {length}",
                        etag=etag, http_status=got.status))
    before = (ctx.baseline or {}).get(copy.href)
    if etag and before and etag != before:
        rows.append(row(ctx, 1, "etag", art, copy, "changed", f"ETag {etag}, was {before}", etag=etag))
    elif etag:
        rows.append(row(ctx, 1, "etag", art, copy, "ok",
                        "unchanged" if before else "first seen (the baseline from now on)", etag=etag))
    ranges = (got.header("accept-ranges") or "").lower()
    cors = got.header("access-control-allow-origin")
    notes = [] if ranges == "bytes" else ["no Accept-Ranges: bytes"]
    if cors not in ("*", ORIGIN):
        notes.append("no CORS header for another origin")
    rows.append(row(ctx, 1, "range-cors", art, copy, "warning" if notes else "ok",
                    "; ".join(notes) or f"Accept-Ranges: bytes, Access-Control-Allow-Origin: {cors}"))
    rows.extend(_checksums(ctx, services, version, art, copy, got))
    return rows


def _checksums(ctx: Context, services: ServiceChecksums, version: Version, art: Artifact,
               copy: Copy, got: Answer) -> list[Row]:
    found: list[tuple[str, str, str]] = []  # (what, theirs, ours)
    service = services.lookup(copy.href)
    s3 = any(k.startswith("x-amz-") for k in got.headers)
    # the md5 is in the manifest: fetched only for a mirror that reports one
    facts = output_facts(ctx.net, version, art) if art.is_data and (service or s3) else {}
    md5 = str(facts.get("md5") or "")
    if service is not None:
        name, theirs = service
        if not theirs:
            return [row(ctx, 1, "checksum", art, copy, "missing", f"{name} does not list {art.file}")]
        if theirs.get("size") and theirs["size"] != str(art.size):
            found.append((f"{name} size", theirs["size"], str(art.size)))
        if theirs.get("md5") and md5:
            found.append((f"{name} md5", theirs["md5"], md5))
    if s3:  # an S3 store
        etag = (got.header("etag") or "").strip('"')
        if md5 and re.fullmatch(r"[0-9a-f]{32}", etag):  # single part: the ETag is the md5
            found.append(("S3 ETag (single-part md5)", etag, md5))
        recorded = (got.header("x-amz-meta-md5") or "").lower()
        if not md5 and re.fullmatch(r"[0-9a-f]{32}", etag) and re.fullmatch(r"[0-9a-f]{32}", recorded):
            # No manifest md5 (a raw source): the md5 d4c recorded at upload. A copy replaced
            # with our metadata kept has the old record and a new ETag (the outsider's trial).
            found.append(("S3 ETag (single-part md5) against the md5 d4c recorded", etag, recorded))
        stored = got.header("x-amz-checksum-sha256")
        if stored and "-" not in stored and art.sha256:
            found.append(("S3 x-amz-checksum-sha256", base64.b64decode(stored).hex(), art.sha256))
        meta = got.header("x-amz-meta-sha256")
        if meta and art.sha256:
            found.append(("S3 metadata sha256", meta, art.sha256))
    if not found:  # said, not silent: nothing here to compare, only tier 3's hash can tell
        return [row(ctx, 1, "checksum", art, copy, "skipped",
                    "no checksum to compare (no d4c metadata on the object); tier 3 hashes it")] if s3 else []
    bad = [f"{what} {theirs}, expected {ours}" for what, theirs, ours in found if theirs != ours]
    if bad:
        return [row(ctx, 1, "checksum", art, copy, "corrupt", "; ".join(bad))]
    return [row(ctx, 1, "checksum", art, copy, "ok", ", ".join(w for w, _, _ in found) + " match")]


# -- tier 2 ------------------------------------------------------------------------------

def choose_pieces(date: str, sha256: str, count: int, k: int) -> list[int]:
    """k distinct piece indices from the public seed: for j = 0, 1, ..., index =
    big-endian first 8 bytes of sha256("<date>:<sha256>:<j>") mod count, duplicates
    skipped, until k (or every piece) are chosen. Anyone can recompute it."""
    chosen: list[int] = []
    j = 0
    want = min(k, count)
    while len(chosen) < want:
        digest = hashlib.sha256(f"{date}:{sha256}:{j}".encode()).digest()
        index = int.from_bytes(digest[:8], "big") % count
        if index not in chosen:
            chosen.append(index)
        j += 1
    return sorted(chosen)


def tier2(ctx: Context, version: Version, art: Artifact, copy: Copy) -> list[Row]:
    """k pieces chosen from the public seed, fetched with Range, against the manifest's SHA-1s."""
    facts = output_facts(ctx.net, version, art)
    piece_size = int(facts.get("piece_size") or 0)
    pieces = bytes.fromhex(str(facts.get("pieces_sha1") or ""))
    count = -(-art.size // piece_size) if piece_size else 0
    if not count or len(pieces) != 20 * count:
        return [row(ctx, 2, "pieces", art, copy, "skipped", "no piece hashes in the manifest")]
    chosen = choose_pieces(ctx.date, art.sha256, count, ctx.pieces)
    local = file_path(copy.href)
    bad, read = [], 0
    for i in chosen:
        start, end = i * piece_size, min((i + 1) * piece_size, art.size) - 1
        if local is not None:
            try:
                with open(local, "rb") as fh:
                    fh.seek(start)
                    data = fh.read(end - start + 1)
            except OSError:
                return [row(ctx, 2, "pieces", art, copy, "missing", f"cannot read {local}")]
        else:
            got = ctx.net.request("GET", copy.href, headers={"Range": f"bytes={start}-{end}"},
                                  limit=end - start + 2)
            gone = _gone(got)
            if gone:
                return [row(ctx, 2, "pieces", art, copy, gone, _why(got), http_status=got.status,
                            bytes_read=read)]
            if got.status != 206:
                return [row(ctx, 2, "pieces", art, copy, "skipped",
                            f"HTTP {got.status} to a Range request (no Range support)",
                            http_status=got.status, bytes_read=read + len(got.body))]
            data = got.body
        read += len(data)
        if len(data) != end - start + 1 or hashlib.sha1(data).digest() != pieces[20 * i:20 * i + 20]:
            bad.append(i)
    evidence = f"pieces {chosen} of {count} (piece size {piece_size}, seed {ctx.date})"
    if bad:
        return [row(ctx, 2, "pieces", art, copy, "corrupt", f"piece {bad} differs; {evidence}",
                    bytes_read=read)]
    return [row(ctx, 2, "pieces", art, copy, "ok", evidence, bytes_read=read)]


# -- tier 3 ------------------------------------------------------------------------------

def tier3(ctx: Context, art: Artifact, copy: Copy, reason: str) -> list[Row]:
    """The full sha256 of the copy."""
    hasher = hashlib.sha256()
    local = file_path(copy.href)
    if local is not None:
        try:
            with open(local, "rb") as fh:
                read = 0
                while read <= art.size and (chunk := fh.read(1 << 20)):  # not past size + 1
                    hasher.update(chunk)
                    read += len(chunk)
        except OSError:
            return [row(ctx, 3, "sha256", art, copy, "missing", f"cannot read {local}")]
    else:
        got, read = ctx.net.stream_hash(copy.href, hasher, art.size + 1)  # an endless body stops
        gone = _gone(got) or (None if got.status == 200 and not got.error else "unreachable")
        if gone:
            return [row(ctx, 3, "sha256", art, copy, gone, _why(got), http_status=got.status,
                        bytes_read=read)]
    digest = hasher.hexdigest()
    if read > art.size:
        return [row(ctx, 3, "sha256", art, copy, "corrupt",
                    f"more than {art.size} bytes (stopped at {read}), expected {art.size} ({reason})",
                    bytes_read=read)]
    if read != art.size or digest != art.sha256:
        return [row(ctx, 3, "sha256", art, copy, "corrupt",
                    f"{read} bytes with sha256 {digest}, expected {art.size} with {art.sha256} ({reason})",
                    bytes_read=read)]
    return [row(ctx, 3, "sha256", art, copy, "ok", f"sha256 matches ({reason})", bytes_read=read)]
