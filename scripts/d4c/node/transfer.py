"""One verified download: from each copy in turn (main href, then the alternates), into a
partial file that a later run resumes with `Range`, hashed while it streams.

Mirror answers are untrusted: a `Content-Length` or `Content-Range` that does not fit the
catalog's `file:size` refuses that copy before a byte is written, a body longer than the
size is cut off and refused, and only bytes with the catalog's sha256 become a copy. A
partial file whose whole is wrong is deleted (which byte was bad is unknowable). The
day's bandwidth (`Allowance`) stops a transfer between chunks; the partial stays for the
next run.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import requests

from d4c import http

CHUNK = 1 << 16
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class Allowance:
    """Bytes this run may still download (the rest of the day's bandwidth)."""

    left: int
    used: int = 0

    def take(self, n: int) -> None:
        self.left -= n
        self.used += n


@dataclass
class Outcome:
    status: str  # "ok", "paused" (bandwidth), "failed"
    detail: str


def _hash_prefix(path: Path) -> tuple[hashlib._Hash, int]:
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            n += len(block)
    return h, n


def _start(resp: requests.Response, have: int, size: int) -> int | str:
    """Where this answer's body starts in the file, or why the copy is refused."""
    length = resp.headers.get("Content-Length")
    if resp.status_code == 206:
        m = _RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
        if not m or int(m[1]) != have or int(m[2]) != size - 1 or m[3] not in ("*", str(size)):
            return f"Content-Range {resp.headers.get('Content-Range')!r} does not fit file:size {size}"
        start = have
    elif resp.status_code == 200:
        start = 0
    else:
        return f"HTTP {resp.status_code}"
    if length is not None and (not length.isdigit() or int(length) != size - start):
        return f"Content-Length {length}, expected {size - start} (file:size {size})"
    return start


def _stream(resp: requests.Response, part: Path, start: int, size: int, sha256: str,
            allow: Allowance) -> Outcome:
    h, have = _hash_prefix(part) if start else (hashlib.sha256(), 0)
    with part.open("r+b" if start else "wb") as out:
        out.seek(start)
        out.truncate()
        for chunk in resp.iter_content(CHUNK):
            if have + len(chunk) > size:
                part.unlink(missing_ok=True)
                return Outcome("failed", f"sent more than file:size {size}")
            out.write(chunk)
            h.update(chunk)
            have += len(chunk)
            allow.take(len(chunk))
            if allow.left <= 0 and have < size:
                return Outcome("paused", f"day's bandwidth used at {have} of {size} bytes")
    if have < size:
        return Outcome("failed", f"connection ended at {have} of {size} bytes (kept for resume)")
    if h.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        return Outcome("failed", f"sha256 {h.hexdigest()[:12]}..., expected {sha256[:12]}... (deleted)")
    return Outcome("ok", "verified")


def download(hrefs: tuple[str, ...], part: Path, size: int, sha256: str, allow: Allowance,
             session: requests.Session | None = None) -> Outcome:
    """Fill `part` with the file, trying each copy; "ok" means `part` has the sha256."""
    sess = session or http.session(retries=2, backoff_factor=0.2)
    part.parent.mkdir(parents=True, exist_ok=True)
    last = Outcome("failed", "the catalog names no http(s) copy")
    for href in hrefs:
        if allow.left <= 0:
            return Outcome("paused", "day's bandwidth used")
        have = part.stat().st_size if part.is_file() else 0
        if have > size:
            part.unlink()
            have = 0
        # identity: the bytes counted and hashed are the file's, never a decoded stream
        headers = {"Accept-Encoding": "identity", **({"Range": f"bytes={have}-"} if have else {})}
        try:
            with sess.get(href, headers=headers, stream=True, allow_redirects=True) as resp:
                start = _start(resp, have, size)
                if isinstance(start, str):
                    last = Outcome("failed", f"{href}: {start}")
                    continue
                got = _stream(resp, part, start, size, sha256, allow)
        except requests.RequestException as exc:
            last = Outcome("failed", f"{href}: {http.describe(exc)} (partial kept for resume)")
            continue
        except OSError as exc:
            return Outcome("failed", f"{part}: {exc.strerror or exc}")
        if got.status in ("ok", "paused"):
            return got
        last = Outcome("failed", f"{href}: {got.detail}")
    return last
