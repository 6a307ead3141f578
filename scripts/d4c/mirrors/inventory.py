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
"""
from __future__ import annotations

import json
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


def versions_of(table: pa.Table) -> list[Version]:
    from d4c.catalog.writer import table_to_items

    out = []
    for item in table_to_items(table):
        props = item["properties"]
        arts = []
        for key, asset in sorted(item.get("assets", {}).items()):
            copies = [Copy(str(asset.get("d4c:mirror") or MAIN), asset["href"],
                           asset.get("d4c:retain") or "all")]
            alternate = asset.get("alternate") or {}
            torrent = None
            for name, alt in sorted(alternate.items()):
                if name == TORRENT and "data" in (asset.get("roles") or ()):
                    torrent = f"torrent-{key}"
                    continue
                if not str(alt.get("href", "")).startswith(FETCHABLE):
                    continue  # `<target>-s3`: the s3:// address of that target's https copy
                copies.append(Copy(name, alt["href"], alt.get("d4c:retain") or "all"))
            checksum = str(asset.get("file:checksum") or "")
            arts.append(Artifact(
                item_id=item["id"], collection=item["collection"], version=props["version"],
                asset=key, file=str(asset.get("title") or key), size=int(asset.get("file:size") or 0),
                sha256=checksum[4:] if checksum.startswith("1220") else "",
                roles=tuple(asset.get("roles") or ()), copies=copies, torrent=torrent))
        until = props.get("d4c:retention_until")
        retention = (str(until), str(props.get("d4c:retention_reason") or "")) if until else None
        out.append(Version(item["id"], item["collection"], props["version"],
                           str(props.get("created") or ""), arts, retention))
    return out


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
