"""One bilingual STAC Collection per dataset, derived from its items only.

Deriving collections from items (never from records directly) is what makes an
append, which sees only the catalog's items, agree with a rebuild from releases/.
Static layout for STAC browsers: <dir>/catalog.json, <dir>/<id>/collection.json and
<dir>/<id>/v<version>.json, matching the relative links the items carry.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from d4c import canonical, semver
from d4c.atomic import atomic_write
from d4c.catalog.items import EXT, STAC_VERSION, Item

Collection = dict[str, Any]
_COPIED = ("title", "description", "d4c:title_fr", "d4c:description_fr",
           "license", "keywords", "providers")


def _interval(item: Item) -> tuple[str | None, str | None]:
    p = item["properties"]
    if p.get("start_datetime"):
        return p["start_datetime"], p.get("end_datetime")
    return p.get("datetime"), p.get("datetime")


def collection_for(items: list[Item]) -> Collection:
    """The collection of one dataset: text from the latest version, extent over all versions."""
    ordered = sorted(items, key=lambda i: semver.key(i["properties"]["version"]))
    current = [i for i in ordered if not i["properties"].get("deprecated")] or ordered
    stable = [i for i in current if not semver.is_prerelease(i["properties"]["version"])]
    latest = (stable or current)[-1]["properties"]  # a newer pre-release does not speak for it
    starts = [s for s, _ in map(_interval, ordered) if s]
    ends = [e for _, e in map(_interval, ordered) if e]
    boxes = [i["bbox"] for i in ordered]
    coll: Collection = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [EXT["d4c"]] if any(k.startswith("d4c:") for k in latest) else [],
        "id": ordered[0]["collection"],
        **{k: latest[k] for k in _COPIED if k in latest},
        "extent": {
            "spatial": {"bbox": [[min(b[0] for b in boxes), min(b[1] for b in boxes),
                                  max(b[2] for b in boxes), max(b[3] for b in boxes)]]},
            "temporal": {"interval": [[min(starts) if starts else None,
                                       max(ends) if ends else None]]},
        },
        # Item links only in the static tree (write_dataset): embedded in the footer, which
        # every query reads, they would grow it by one link per version.
        "links": [],
    }
    return coll


def collections_for(items: list[Item]) -> dict[str, Collection]:
    """Collections by id, in id order (the order they are embedded in the file metadata)."""
    grouped: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        grouped[item["collection"]].append(item)
    return {cid: collection_for(grouped[cid]) for cid in sorted(grouped)}


def _write_json(path: Path, obj: Any) -> None:
    atomic_write(path, data=canonical.encode(obj))


def write_root(collections: dict[str, Collection], out_dir: Path) -> None:
    """The root catalog.json of the static tree, linking every collection."""
    root = {
        "type": "Catalog", "stac_version": STAC_VERSION, "id": "d4c",
        "description": "Data for Canada: every released version of every dataset.",
        "links": [{"rel": "child", "href": f"./{cid}/collection.json",
                   "type": "application/json", "title": c.get("title", cid)}
                  for cid, c in collections.items()],
    }
    _write_json(out_dir / "catalog.json", root)


def write_dataset(items: list[Item], coll: Collection, out_dir: Path) -> None:
    """One dataset's collection.json (with item links) and one JSON file per version."""
    links = [{"rel": "item", "href": f"./v{i['properties']['version']}.json",
              "type": "application/geo+json", "title": i["id"]} for i in items]
    _write_json(out_dir / coll["id"] / "collection.json", {**coll, "links": links})
    for item in items:
        _write_json(out_dir / coll["id"] / f"v{item['properties']['version']}.json", item)
