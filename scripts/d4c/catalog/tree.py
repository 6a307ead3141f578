"""The static STAC tree (`d4c catalog build --collections-dir DIR`), a Portolan catalog.

    DIR/catalog.json, README.md, AGENTS.md
    DIR/extensions/d4c/v1.1.0/schema.json      the d4c extension schema items declare
    DIR/extensions/d4c/v1.0.0/schema.json      its earlier version, as it was published
    DIR/<id>/collection.json, README.md, AGENTS.md, thumbnail.png
    DIR/<id>/<id>_v<version>.json              one item per version (immutable paths)

Structural links are relative; the catalog and collections declare the Portolan profile
(checked by `rashid` in the tests). Everything here is derived from the items and their
collections, written with canonical JSON, so the same records give the same bytes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from d4c import canonical
from d4c.atomic import atomic_write
from d4c.catalog import readme
from d4c.catalog.collections import Collection
from d4c.catalog.items import D4C_VERSIONS, EXT, STAC_VERSION, Item, d4c_on_assets
from d4c.catalog.thumbnail import footprint_png

PORTOLAN = "https://schemas.portolan-sdi.org/portolan/v0.2.0/schema.json"
_STAC_BASE = "https://dataforcanada.org/stac/"  # the tree is served here (docs/catalog.md)


def schema_path(url: str) -> str:
    """An extension schema URL -> its path in the tree (extensions/d4c/vX.Y.Z/schema.json)."""
    return url.removeprefix(_STAC_BASE)


D4C_SCHEMA_PATH = schema_path(EXT["d4c"])
_JSON, _MD = "application/json", "text/markdown"


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, data=canonical.encode(obj))


def _docs(title: str) -> list[dict[str, str]]:
    return [{"rel": "describedby", "href": "./README.md", "type": _MD, "title": f"{title}: README"},
            {"rel": "agents", "href": "./AGENTS.md", "type": _MD, "title": f"{title}: AGENTS"}]


def write_root(collections: dict[str, Collection], out_dir: Path) -> None:
    """The root catalog.json with its README and AGENTS, and the d4c extension schema."""
    title = "Data for Canada"
    updated = max((c["updated"] for c in collections.values() if c.get("updated")), default=None)
    root: dict[str, Any] = {
        "type": "Catalog", "stac_version": STAC_VERSION, "stac_extensions": [PORTOLAN],
        "id": "d4c", "title": title,
        "description": "Data for Canada: every released version of every dataset.",
        "links": [{"rel": "root", "href": "./catalog.json", "type": _JSON, "title": title},
                  *_docs(title),
                  *({"rel": "child", "href": f"./{cid}/collection.json", "type": _JSON,
                     "title": c.get("title", cid)} for cid, c in collections.items())],
    }
    if updated:
        root["updated"] = updated
    _write_json(out_dir / "catalog.json", root)
    atomic_write(out_dir / "README.md", data=readme.root_readme(collections).encode())
    atomic_write(out_dir / "AGENTS.md", data=readme.root_agents().encode())
    # imported here: d4c.schemas imports jsonschema, which a build without the tree never needs
    from d4c import schemas

    for url, name in D4C_VERSIONS.items():  # every published version: old items keep resolving
        atomic_write(out_dir / schema_path(url), data=canonical.encode(schemas.load(name)))


def tree_collection(items: list[Item], coll: Collection) -> Collection:
    """The collection as the tree holds it: Portolan links, item links, a thumbnail."""
    links = [{"rel": "root", "href": "../catalog.json", "type": _JSON, "title": "Data for Canada"},
             {"rel": "parent", "href": "../catalog.json", "type": _JSON,
              "title": "Data for Canada"},
             *_docs(str(coll.get("title") or coll["id"])),
             *coll["links"],
             *({"rel": "item", "href": f"./{i['id']}.json", "type": "application/geo+json",
                "title": i["id"]} for i in items)]
    png = footprint_png([i["bbox"] for i in items])
    assets = {**_latest_data(items), "thumbnail": {
        "href": "./thumbnail.png", "type": "image/png", "roles": ["thumbnail"],
        "title": "Footprint of every version on a world map", "file:size": len(png),
        "file:checksum": "1220" + hashlib.sha256(png).hexdigest()}}
    exts = {*coll["stac_extensions"], PORTOLAN, EXT["file"]}
    if any("alternate" in a for a in assets.values()):
        exts.add(EXT["alternate"])
    if d4c_on_assets(assets):
        exts.add(EXT["d4c"])
    return {**coll, "stac_extensions": sorted(exts), "links": links, "assets": assets}


def _latest_data(items: list[Item]) -> dict[str, Any]:
    """The latest version's data files, also at collection level, as Portolan has a
    single-file collection carry its data. Not for rasters: Portolan has scene COGs on
    items only, and every version's COG is on its item."""
    latest = next(i for i in reversed(items)
                  if not any(lk["rel"] == "latest-version" for lk in i["links"]))
    return {f"latest-{key}": {**a, "title": f"{a['title']} (latest version)"}
            for key, a in latest["assets"].items()
            if "data" in a["roles"] and not a["type"].startswith("image/tiff")}


def write_dataset(items: list[Item], coll: Collection, out_dir: Path) -> None:
    """One dataset's folder: collection.json, README, AGENTS, thumbnail, one JSON per version."""
    folder = out_dir / coll["id"]
    _write_json(folder / "collection.json", tree_collection(items, coll))
    atomic_write(folder / "README.md", data=readme.collection_readme(items, coll).encode())
    atomic_write(folder / "AGENTS.md", data=readme.collection_agents(items, coll).encode())
    atomic_write(folder / "thumbnail.png", data=footprint_png([i["bbox"] for i in items]))
    for item in items:
        _write_json(folder / f"{item['id']}.json", item)
