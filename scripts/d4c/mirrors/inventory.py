"""What to check: every asset of every catalog item, with every copy the catalog names.

A catalog item (one dataset version) has assets; each asset is one file (`title`, its
`file:size` and `file:checksum`) with a main `href` and `alternate` copies by target name
(docs/catalog.md). The main href's target is the asset's `d4c:mirror`; a catalog written
before that field names none, and that copy is reported as mirror `main` (its host is in
the `host` column). The `torrent` alternate of a
data asset is not a copy of the data: it points at the `.torrent` file, which is an asset
of its own (`torrent-<name>`), and is used for the tracker scrape.

Piece hashes, md5s and the upstream sources are not in the catalog: they are in the
version's manifest (its `manifest` asset, `outputs[].pieces_sha1`, `piece_size`, `md5`,
`sources[].url`), fetched from the first copy that gives bytes with the manifest's sha256
and kept in the cache by sha256. A recorded retention or takedown date is in the item
(`d4c:retention_until`, `d4c:retention_reason`).

The catalog is untrusted: an asset whose `file:checksum` is not a sha256 (64 lowercase hex
after `1220`: callers build cache and repair paths from it) or whose `file:size` is not
0 <= size < 2**63 (the health file's int64) is left out, one line each in `left`.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from d4c import paths
from d4c.errors import D4CError
from d4c.mirrors.net import Net, file_path

MAIN = "main"  # the mirror name of a main href whose asset has no d4c:mirror (older catalogs)
TORRENT = "torrent"
FETCHABLE = ("http://", "https://", "file://")  # what the checks read; s3:// is not
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_SIZE = 2**63  # sizes go into the health file's int64 column


def size_ok(size: object) -> bool:
    return isinstance(size, int) and not isinstance(size, bool) and 0 <= size < MAX_SIZE


def printable(text: object) -> str:
    """Text from a catalog, bundle or server with its control characters escaped (`\\n`):
    a name with a newline would start a line of its own, e.g. a GitHub workflow command."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


@dataclass(frozen=True)
class Copy:
    mirror: str
    href: str
    retain: str = "all"  # "latest": a copy its store deletes at the next version


@dataclass
class Artifact:
    item_id: str
    collection: str
    version: str
    asset: str
    file: str
    size: int
    sha256: str
    roles: tuple[str, ...]
    copies: list[Copy]
    torrent: str | None = None  # the asset key of this data file's torrent

    @property
    def is_data(self) -> bool:
        return "data" in self.roles


@dataclass
class Version:
    item_id: str
    collection: str
    version: str
    created: str
    artifacts: list[Artifact]
    retention: tuple[str, str] | None = None  # (until, reason) when the item records one
    _manifest: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def artifact(self, asset: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.asset == asset), None)


def read_catalog(catalog: str, s3_client: Any = None) -> pa.Table:
    """The catalog's rows: a local file, or an https:// / s3:// URL (d4c.catalog.query)."""
    if "://" in catalog and not catalog.startswith("file://"):
        from d4c.catalog.query import open_remote, read_remote

        return read_remote(open_remote(catalog, s3_client), None)
    path = Path(catalog.removeprefix("file://"))
    if not path.is_file():
        raise D4CError(f"no catalog at {catalog}", hint="pass --catalog FILE|URL, or build one with `d4c catalog build`")
    return pq.read_table(path)


def versions_of(table: pa.Table, left: list[str] | None = None) -> list[Version]:
    """The catalog's versions; an asset with a bad sha256 or size is left out, said in `left`."""
    from d4c.catalog.writer import table_to_items

    out = []
    for item in table_to_items(table):
        props = item["properties"]
        arts = []
        for key, asset in sorted(item.get("assets", {}).items()):
            art = _artifact(item, key, asset)
            if isinstance(art, str):
                if left is not None:
                    left.append(f"catalog item {printable(item['id'])[:200]} asset {printable(key)[:200]}: "
                                f"{art}; left out (fix the catalog row)")
                continue
            arts.append(art)
        until = props.get("d4c:retention_until")
        retention = (str(until), str(props.get("d4c:retention_reason") or "")) if until else None
        out.append(Version(printable(item["id"]), printable(item["collection"]), printable(props["version"]),
                           str(props.get("created") or ""), arts, retention))
    return out


def _artifact(item: dict[str, Any], key: str, asset: dict[str, Any]) -> Artifact | str:
    """One asset with its copies, or why it is unusable."""
    checksum = str(asset.get("file:checksum") or "")
    sha = checksum[4:] if checksum.startswith("1220") else ""
    if checksum and not SHA256.fullmatch(sha):
        return f"file:checksum {printable(checksum)[:80]!r} is not 1220 and a sha256 (64 lowercase hex)"
    size = asset.get("file:size") or 0
    if not size_ok(size):
        return f"file:size {printable(size)[:40]} is not a size (0 to 2**63 - 1)"
    copies = [Copy(printable(asset.get("d4c:mirror") or MAIN), asset["href"], asset.get("d4c:retain") or "all")]
    torrent = None
    for name, alt in sorted((asset.get("alternate") or {}).items()):
        if name == TORRENT and "data" in (asset.get("roles") or ()):
            torrent = f"torrent-{key}"
            continue
        if not str(alt.get("href", "")).startswith(FETCHABLE):
            continue  # `<target>-s3`: the s3:// address of that target's https copy
        copies.append(Copy(printable(name), alt["href"], alt.get("d4c:retain") or "all"))
    # names are printed, put in issue titles and the summary: no control characters in them
    return Artifact(item_id=printable(item["id"]), collection=printable(item["collection"]),
                    version=printable(item["properties"]["version"]), asset=printable(key),
                    file=printable(asset.get("title") or key), size=size, sha256=sha,
                    roles=tuple(asset.get("roles") or ()), copies=copies, torrent=torrent)


def cached(sha256: str) -> Path:
    return paths.cache_dir() / "mirrors" / sha256[:2] / sha256


def fetch_small(net: Net, art: Artifact, limit: int = 64 << 20) -> bytes | None:
    """A small file's bytes from the first copy whose sha256 is right (cached by sha256)."""
    import hashlib

    path = cached(art.sha256)
    if path.is_file():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == art.sha256:
            return data
    if art.size > limit:
        return None
    for copy in art.copies:
        local = file_path(copy.href)
        if local is not None:
            data = local.read_bytes() if local.is_file() else b""
        else:
            got = net.request("GET", copy.href, limit=limit)
            data = got.body if got.status == 200 else b""
        if data and hashlib.sha256(data).hexdigest() == art.sha256:
            from d4c.atomic import atomic_write

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data=data)
            return data
    return None


def manifest_of(net: Net, version: Version) -> dict[str, Any]:
    """The version's manifest (verified by its sha256), {} when no copy gives it."""
    with version._lock:
        if version._manifest is None:
            art = version.artifact("manifest")
            data = fetch_small(net, art) if art else None
            try:
                version._manifest = json.loads(data) if data else {}
            except ValueError:
                version._manifest = {}
        return version._manifest


def upstream_sources(net: Net, version: Version) -> list[dict[str, Any]]:
    """The manifest's sources that name a public URL (the upstream the build read)."""
    sources = manifest_of(net, version).get("sources") or []
    return [s for s in sources if isinstance(s, dict) and str(s.get("url") or "").startswith(FETCHABLE[:2])]


def output_facts(net: Net, version: Version, art: Artifact) -> dict[str, Any]:
    """The manifest's output entry for this data file (md5, piece_size, pieces_sha1)."""
    if not art.is_data:
        return {}
    manifest = manifest_of(net, version)
    return next((o for o in manifest.get("outputs") or [] if o.get("file") == art.file), {})
