"""The raw sources' mirrored copies: what `d4c mirrors check` checks beside the catalog's.

A release copies each raw source to every `source_mirror` target (a store at
`<source_prefix>/<aa>/<sha256>`, a service as `source-<sha256>` of its deposit). The
catalog does not list those copies; the version's source bundle does, in `mirrors.json`
(d4c.copies), which the release plan writes. The bundle is an asset of the item, so it is
read like the manifest: from the first copy with the asset's sha256, cached by sha256 (a
later run makes no request for it). A bundle older than mirrors.json, or a release with no
source mirror, lists no copy: nothing to check. Zenodo's copies are not in it (their URLs
exist only after the release); the release record lists them.

The bundle and its list are untrusted (a catalog, hence a bundle, may come from anyone).
The bundle is read through a reader that refuses, before reading them, more than
MAX_SCAN decompressed bytes in all or MAX_MEMBER in one read (a GNU long name or pax
header is read whole by tarfile), and at most MAX_MEMBERS members. A copy is kept only
if its mirror is one of the item's own (an asset's `d4c:mirror` or alternate name), its
URL is on that mirror's scheme and host as the item's assets give it (file:// only for a
mirror the catalog has on disk; in a catalog from before `d4c:mirror`, a mirror the item
does not name may be on its main hrefs' host), its path ends in the sha256 (`<sha256>` or
`source-<sha256>`, as ours all do) and it has no query or fragment; its source must be
one the bundle's own manifest names, with a size 0 <= size < 2**63. Anything else, or a
list over the caps (MAX_SOURCES sources, MAX_COPIES copies of one, MAX_TOTAL copies in
all), is left out with one warning row per version (check `sources`), evidence for the
at-risk signal. A content-addressed copy shared by several versions that expect the same
sha256 and size is checked once, and its rows are given to each of them; a version that
claims another size for it gets its own check, so one version cannot change another's
verdict.
"""
from __future__ import annotations

import gzip
import io
import re
import tarfile
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from d4c import model
from d4c.copies import MIRRORS_FILE, from_mirrors_doc
from d4c.errors import D4CError
from d4c.mirrors import health
from d4c.mirrors.checks import Context, Row, row
from d4c.mirrors.inventory import MAIN, Artifact, Copy, Version, fetch_small, printable, size_ok

ROLE = health.SOURCE_ROLE  # the health file's role of a mirrored raw source's copy
LIST = "sources"  # the check kind of a version's warning about its source list
MAX_BUNDLE = 64 << 20  # a bundle holds code, not data
MAX_MEMBER = 16 << 20  # mirrors.json, manifest.json
MAX_SCAN = 1 << 30  # decompressed tar bytes (headers included) read before giving up on them
MAX_MEMBERS = 10_000  # tar members read before giving up (a bundle holds a recipe's code)
MAX_SOURCES, MAX_COPIES, MAX_TOTAL, MAX_URL = 10_000, 64, 1_000, 4096
_SHA = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass
class SourceCopy(Artifact):
    upstream: str = ""  # the recipe's URL of this source, for the failure line


@dataclass
class Jobs:
    """The unique copies to check, the versions sharing each, and the list warnings."""

    work: list[tuple[Version, Artifact, Copy]]
    shared: dict[tuple[str, str, str], list[Artifact]]  # (item, asset, href) -> other versions
    rows: list[Row]


class _Capped:
    """The bundle's decompressed bytes for tarfile, refusing a read or seek past MAX_SCAN,
    or one read over MAX_MEMBER, before it is made (so before anything is allocated)."""

    def __init__(self, raw: gzip.GzipFile) -> None:
        self.raw = raw

    def _refuse(self, end: int, size: int) -> None:
        if end > MAX_SCAN:
            raise D4CError(f"its bundle holds over {MAX_SCAN} bytes (tar headers included) "
                           f"before {MIRRORS_FILE}")
        if size > MAX_MEMBER + tarfile.BLOCKSIZE:
            raise D4CError(f"its bundle has a tar header or member of {size} bytes, over {MAX_MEMBER}")

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise D4CError("its bundle cannot be read whole")  # tarfile always says how much
        self._refuse(self.raw.tell() + size, size)
        return self.raw.read(size)

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._refuse(pos, 0)
        return self.raw.seek(pos, whence)

    def tell(self) -> int:
        return self.raw.tell()


def _members(data: bytes) -> dict[str, bytes]:
    """manifest.json and mirrors.json of the bundle's top folder (stops once both are read)."""
    want = ("manifest.json", MIRRORS_FILE)
    out: dict[str, bytes] = {}
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as raw, \
            tarfile.open(fileobj=_Capped(raw), mode="r:") as tar:  # type: ignore[call-overload]
        for count, m in enumerate(tar, 1):
            if count > MAX_MEMBERS:
                raise D4CError(f"its bundle has over {MAX_MEMBERS} members before {MIRRORS_FILE}")
            parts = m.name.split("/")
            if len(parts) == 2 and parts[1] in want and m.isfile():
                if m.size > MAX_MEMBER:
                    raise D4CError(f"its bundle's {parts[1]} is over {MAX_MEMBER} bytes")
                fh = tar.extractfile(m)
                out.setdefault(parts[1], fh.read() if fh else b"")
                if len(out) == len(want):
                    break
    return out


def _bundle_doc(ctx: Context, version: Version) -> tuple[Any, Any] | None:
    """(mirrors.json, manifest) of the version's bundle; None when it lists no sources."""
    art = next((a for a in version.artifacts if "source" in a.roles and a.sha256), None)
    if art is None:
        return None
    if art.size > MAX_BUNDLE:
        raise D4CError(f"its source bundle {art.file} is over {MAX_BUNDLE} bytes (file:size {art.size})")
    data = fetch_small(ctx.net, art, limit=MAX_BUNDLE)
    if data is None:
        return None  # no copy gave the bundle: its own copies' rows say so
    try:
        found = _members(data)
    except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error) as exc:
        raise D4CError(f"its source bundle {art.file} cannot be read ({printable(exc)[:200]})") from None
    except MemoryError:
        raise D4CError(f"its source bundle {art.file} does not fit in memory") from None
    if MIRRORS_FILE not in found:
        return None  # a bundle made before mirrors.json
    where = f"{art.file}:{MIRRORS_FILE}"
    manifest = model.parse_json(found.get("manifest.json", b"{}"), where, "manifest")
    return model.parse_json(found[MIRRORS_FILE], where, "mirrors list"), manifest


def _hosts(version: Version) -> dict[str, set[str]]:
    """Each mirror of the item and where its assets are: `scheme://host`, or `file`."""
    out: dict[str, set[str]] = {}
    for c in (c for a in version.artifacts for c in a.copies):
        parts = urlsplit(c.href)
        where = "file" if parts.scheme == "file" else f"{parts.scheme}://{parts.netloc}"
        out.setdefault(c.mirror, set()).add(where)
    return out


def _url_ok(url: str, sha: str, mirror: str, hosts: dict[str, set[str]]) -> bool:
    """Our copies are named by their sha256 (`<aa>/<sha256>`, `source-<sha256>`) on the
    mirror's own host: anything else is not one of them."""
    if len(url) > MAX_URL or not url.isprintable() or "?" in url or "#" in url:
        return False
    parts = urlsplit(url)
    path = unquote(parts.path)
    if path.rsplit("/", 1)[-1] not in (sha, f"source-{sha}") or ".." in path.split("/"):
        return False
    # a catalog from before d4c:mirror names each main href `main`: its mirror is unnamed there
    where = hosts[mirror] if mirror in hosts else hosts.get(MAIN, set())
    if parts.scheme == "file":
        return not parts.netloc and path == parts.path and "file" in where
    return parts.scheme in ("http", "https") and f"{parts.scheme}://{parts.netloc}" in where


def listed(ctx: Context, version: Version) -> tuple[list[Artifact], Row | None]:
    """The version's mirrored sources, one Artifact each, and a warning row if any was left out."""
    try:
        got = _bundle_doc(ctx, version)
        if got is None:
            return [], None
        doc, manifest = got
        copies = from_mirrors_doc(doc, MIRRORS_FILE).sources
        facts = {str(s.get("sha256")): s for s in (manifest.get("sources") or []) if isinstance(s, dict)}
    except (D4CError, AttributeError, TypeError, RecursionError) as exc:
        why = exc.message if isinstance(exc, D4CError) else f"not a d4c manifest ({type(exc).__name__})"
        return [], _warning(ctx, version, f"the source list of the bundle is unusable: {why}")
    total = sum(len(u) for u in copies.values())
    if len(copies) > MAX_SOURCES or any(len(u) > MAX_COPIES for u in copies.values()) or total > MAX_TOTAL:
        return [], _warning(ctx, version, f"the bundle's {MIRRORS_FILE} lists {len(copies)} sources "
                            f"with {total} copies, over the caps ({MAX_SOURCES} sources, {MAX_COPIES} "
                            f"copies of one, {MAX_TOTAL} in all); none checked")
    out, left = _kept(version, copies, facts)
    if left:
        return out, _warning(ctx, version, f"{len(left)} entries of the bundle's {MIRRORS_FILE} left out "
                             f"(not a copy on one of the item's mirrors named by its sha256, a bad name, "
                             f"sha256 or size): {'; '.join(left[:3])}")
    return out, None


def _kept(version: Version, copies: dict[str, dict[str, str]],
          facts: dict[str, Any]) -> tuple[list[Artifact], list[str]]:
    """The copies that pass _url_ok, one SourceCopy per source; what was left out, quoted."""
    hosts = _hosts(version)
    out: list[Artifact] = []
    left: list[str] = []
    for sha, urls in sorted(copies.items()):
        fact = facts.get(sha)
        size = fact.get("size") if fact else None
        if not _SHA.fullmatch(sha) or fact is None or not size_ok(size if size is not None else 0):
            why = "not a source sha256 of its manifest" if fact is None else f"size {printable(size)[:40]}"
            left.append(f"source {printable(sha)[:80]!r} ({why})")
            continue
        good = sorted((m, u) for m, u in urls.items() if _NAME.fullmatch(m) and _url_ok(u, sha, m, hosts))
        left += [f"{printable(m)[:64]!r}: {printable(u)[:120]!r}" for m, u in sorted(urls.items())
                 if (m, u) not in good]
        if good:
            up = str(fact.get("url") or "")
            out.append(SourceCopy(version.item_id, version.collection, version.version, f"source-{sha}",
                                  printable(fact.get("name") or sha)[:200], size or 0, sha, (ROLE,),
                                  [Copy(m, u) for m, u in good],
                                  upstream=printable(up)[:MAX_URL] if up.startswith(("https://", "http://")) else ""))
    return out, left


def _warning(ctx: Context, version: Version, why: str) -> Row:
    art = Artifact(version.item_id, version.collection, version.version, LIST, "", 0, "", (LIST,), [])
    return row(ctx, 1, LIST, art, None, "warning", why)


def jobs(ctx: Context, versions: list[Version], pool: ThreadPoolExecutor) -> Jobs:
    """Every mirrored source copy of every version, each URL once per expected sha256 and size."""
    first: dict[tuple[str, str, str, int], tuple[Artifact, Copy]] = {}
    out = Jobs([], {}, [])
    for v, (arts, warning) in zip(versions, pool.map(lambda v: listed(ctx, v), versions)):
        out.rows += [warning] if warning else []
        for art in arts:
            for copy in art.copies:
                key = (copy.mirror, copy.href, art.sha256, art.size)  # each expected size checked
                if key in first:
                    owner, _ = first[key]
                    out.shared.setdefault((owner.item_id, owner.asset, copy.href), []).append(art)
                    continue
                first[key] = (art, copy)
                out.work.append((v, art, copy))
    return out


def given(rows: Iterable[Row], shared: dict[tuple[str, str, str], list[Artifact]]) -> list[Row]:
    """The rows of each shared copy, once more for every other version that lists it."""
    out = []
    for r in rows:
        for art in shared.get((r["item_id"], r["asset"], r["href"]), ()):
            out.append({**r, "collection": art.collection, "version": art.version,
                        "item_id": art.item_id, "file": art.file})
    return out


def with_upstream(art: Artifact, rows: list[Row]) -> list[Row]:
    """A source copy's rows name its upstream URL too (the line an operator reads)."""
    up = art.upstream if isinstance(art, SourceCopy) else ""
    return [{**r, "evidence": f"{r['evidence']}; upstream {up}"} for r in rows] if up else rows

