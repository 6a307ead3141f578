"""The raw sources' mirrored copies: what `d4c mirrors check` checks beside the catalog's.

A release copies each raw source to every `source_mirror` target (a store at
`<source_prefix>/<aa>/<sha256>`, a service as `source-<sha256>` of its deposit). The
catalog does not list those copies; the version's source bundle does, in `mirrors.json`
(d4c.copies), which the release plan writes. The bundle is an asset of the item, so it is
read like the manifest: from the first copy with the asset's sha256, cached by sha256 (a
later run makes no request for it). A bundle older than mirrors.json, or a release with no
source mirror, lists no copy: nothing to check. Zenodo's copies are not in it (their URLs
exist only after the release); the release record lists them.

The list is untrusted (a catalog, hence a bundle, may come from anyone): a URL that is not
http(s) (or file:// on a mirror the catalog itself has on disk), a bad sha256 or mirror
name, a URL that does not name the source's sha256 (ours all do), a source the
bundle's own manifest does not name, or a list over the caps is left
out, with one warning row per version (check `sources`), evidence for the at-risk signal.
A content-addressed copy shared by several versions is checked once, and its rows are
given to each of them.
"""
from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from d4c import model
from d4c.copies import MIRRORS_FILE, from_mirrors_doc
from d4c.errors import D4CError
from d4c.mirrors import health
from d4c.mirrors.checks import Context, Row, row
from d4c.mirrors.inventory import Artifact, Copy, Version, fetch_small

ROLE = health.SOURCE_ROLE  # the health file's role of a mirrored raw source's copy
LIST = "sources"  # the check kind of a version's warning about its source list
MAX_BUNDLE = 64 << 20  # a bundle holds code, not data
MAX_MEMBER = 16 << 20  # mirrors.json, manifest.json
MAX_SCAN = 1 << 30  # tar bytes read before giving up on finding them
MAX_SOURCES, MAX_COPIES, MAX_URL = 10_000, 64, 4096
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


def _members(data: bytes) -> dict[str, bytes]:
    """manifest.json and mirrors.json of the bundle's top folder (stops once both are read)."""
    want, seen = ("manifest.json", MIRRORS_FILE), 0
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar:
            seen += m.size
            parts = m.name.split("/")
            if len(parts) == 2 and parts[1] in want and m.isfile():
                if m.size > MAX_MEMBER:
                    raise D4CError(f"its bundle's {parts[1]} is over {MAX_MEMBER} bytes")
                fh = tar.extractfile(m)
                out.setdefault(parts[1], fh.read() if fh else b"")
                if len(out) == len(want):
                    break
            if seen > MAX_SCAN:
                raise D4CError(f"its bundle holds over {MAX_SCAN} bytes before {MIRRORS_FILE}")
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
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise D4CError(f"its source bundle {art.file} cannot be read ({exc})") from None
    if MIRRORS_FILE not in found:
        return None  # a bundle made before mirrors.json
    where = f"{art.file}:{MIRRORS_FILE}"
    manifest = model.parse_json(found.get("manifest.json", b"{}"), where, "manifest")
    return model.parse_json(found[MIRRORS_FILE], where, "mirrors list"), manifest


def _url_ok(url: str, sha: str, mirror: str, local: set[str]) -> bool:
    """Our copies are named by their sha256 (`<aa>/<sha256>`, `source-<sha256>`): a URL that
    does not name it is not one, and a file:// one must be on a mirror the catalog has on disk."""
    if len(url) > MAX_URL or any(c in url for c in "\r\n\0") or sha not in url:
        return False
    if url.startswith(("https://", "http://")):
        return True
    return url.startswith("file:///") and mirror in local and url.endswith("/" + sha)


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
    if len(copies) > MAX_SOURCES or any(len(u) > MAX_COPIES for u in copies.values()):
        return [], _warning(ctx, version, f"the bundle's {MIRRORS_FILE} lists more than {MAX_SOURCES} "
                            f"sources or {MAX_COPIES} copies of one; none checked")
    local = {c.mirror for a in version.artifacts for c in a.copies if c.href.startswith("file://")}
    out: list[Artifact] = []
    left: list[str] = []
    for sha, urls in sorted(copies.items()):
        fact = facts.get(sha)
        if not _SHA.fullmatch(sha) or fact is None:
            left.append(f"source {sha[:80]!r} (not a source sha256 of its manifest)")
            continue
        good = sorted((m, u) for m, u in urls.items() if _NAME.fullmatch(m) and _url_ok(u, sha, m, local))
        left += [f"{m[:64]!r}: {u[:120]!r}" for m, u in sorted(urls.items()) if (m, u) not in good]
        if good:
            size, up = fact.get("size"), str(fact.get("url") or "")
            out.append(SourceCopy(version.item_id, version.collection, version.version, f"source-{sha}",
                                  str(fact.get("name") or sha)[:200], size if isinstance(size, int) else 0,
                                  sha, (ROLE,), [Copy(m, u) for m, u in good],
                                  upstream=up[:MAX_URL] if up.startswith(("https://", "http://")) else ""))
    if left:
        return out, _warning(ctx, version, f"{len(left)} entries of the bundle's {MIRRORS_FILE} left out "
                             f"(not an http(s) URL, a bad name or sha256): {'; '.join(left[:3])}")
    return out, None


def _warning(ctx: Context, version: Version, why: str) -> Row:
    art = Artifact(version.item_id, version.collection, version.version, LIST, "", 0, "", (LIST,), [])
    return row(ctx, 1, LIST, art, None, "warning", why)


def jobs(ctx: Context, versions: list[Version], pool: ThreadPoolExecutor) -> Jobs:
    """Every mirrored source copy of every version, each URL once."""
    first: dict[tuple[str, str, str], tuple[Artifact, Copy]] = {}
    out = Jobs([], {}, [])
    for v, (arts, warning) in zip(versions, pool.map(lambda v: listed(ctx, v), versions)):
        out.rows += [warning] if warning else []
        for art in arts:
            for copy in art.copies:
                key = (copy.mirror, copy.href, art.sha256)
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

