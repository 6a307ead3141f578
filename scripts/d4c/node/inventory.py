"""The catalog as a node sees it: one `Entry` per file it could keep.

The catalog is untrusted: an entry whose collection, item id or file name is not one
plain path segment, whose sha256 is not 64 hex digits, or whose size is not positive is
skipped with one warning line, so a path from the catalog never leaves the data folder.
Mirror health comes from the version's `d4c:copies_ok` and `d4c:at_risk` (written by
`d4c mirrors annotate`); a version not yet annotated counts the copies its item names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pyarrow as pa

from d4c.errors import D4CError
from d4c.mirrors.inventory import read_catalog, versions_of

SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_SHA = re.compile(r"[0-9a-f]{64}")
HEALTH = ("deprecated", "d4c:copies_ok", "d4c:at_risk")


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int
    collection: str
    item_id: str
    asset: str
    file: str
    hrefs: tuple[str, ...]  # main href first, then the alternates (http(s) only)
    mirrors: int
    at_risk: bool
    deprecated: bool
    torrent: str | None = None  # the sha256 of this data file's .torrent (another entry)

    @property
    def relpath(self) -> PurePosixPath:
        return PurePosixPath(self.collection, self.item_id, self.file)


def safe_segment(text: str) -> bool:
    return bool(SEGMENT.fullmatch(text)) and ".." not in text


def _health(table: pa.Table) -> dict[str, dict[str, Any]]:
    cols = [c for c in HEALTH if c in table.column_names]
    rows = table.select(["id", *cols]).to_pylist()
    return {str(r["id"]): r for r in rows}


def entries(table: pa.Table, warn: list[str]) -> list[Entry]:
    """Every well-formed file of every version; `warn` collects one line per skipped one."""
    health = _health(table)
    out: dict[str, Entry] = {}
    for version in versions_of(table, warn):  # a bad file:checksum or file:size: one line each
        h = health.get(version.item_id, {})
        for art in version.artifacts:
            where = f"catalog item {version.item_id!r} asset {art.asset!r}"
            if not all(safe_segment(s) for s in (version.collection, version.item_id, art.file)):
                warn.append(f"{where}: unsafe collection, id or file name {art.file!r}, skipped")
                continue
            if not _SHA.fullmatch(art.sha256) or art.size <= 0:
                warn.append(f"{where}: no valid file:checksum or file:size, skipped")
                continue
            hrefs = tuple(c.href for c in art.copies if c.href.startswith(("https://", "http://")))
            copies_ok = h.get("d4c:copies_ok")
            mirrors = int(copies_ok) if isinstance(copies_ok, int) and copies_ok >= 0 else len(hrefs)
            tor = version.artifact(art.torrent) if art.torrent else None
            entry = Entry(art.sha256, art.size, version.collection, version.item_id, art.asset,
                          art.file, hrefs, mirrors, bool(h.get("d4c:at_risk")),
                          bool(h.get("deprecated")),
                          tor.sha256 if tor and _SHA.fullmatch(tor.sha256) else None)
            out.setdefault(entry.sha256, entry)  # one copy per content, whichever names it
    return sorted(out.values(), key=lambda e: (e.collection, e.item_id, e.file))


def load(catalog: str, warn: list[str]) -> list[Entry]:
    """The catalog's entries; a file that is not a readable catalog is one clear error."""
    try:
        return entries(read_catalog(catalog), warn)
    except (pa.ArrowException, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise D4CError(f"{catalog} is not a readable d4c catalog ({type(exc).__name__})",
                       hint="check the node config's `catalog` (a STAC GeoParquet file or URL)") from None
