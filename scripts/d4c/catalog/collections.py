"""One bilingual STAC Collection per dataset, derived from its items only.

Deriving collections from items (never from records directly) is what makes an
append, which sees only the catalog's items, agree with a rebuild from releases/.
The static tree that holds them for STAC browsers is written by d4c.catalog.tree.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from d4c import semver
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
        # Item links only in the static tree (d4c.catalog.tree): embedded in the footer,
        # which every query reads, they would grow it by one link per version.
        "links": _via(latest),
    }
    updated = max(i["properties"]["created"] for i in ordered)
    coll["updated"] = updated  # the last release: when this copy was last brought up to date
    return coll


def _via(props: dict[str, Any]) -> list[dict[str, str]]:
    """A `via` link to the producer's page: where the data comes from (Portolan)."""
    producer = next((p for p in props.get("providers") or []
                     if "producer" in (p.get("roles") or []) and p.get("url")), None)
    if producer is None:
        return []
    return [{"rel": "via", "href": producer["url"], "type": "text/html", "title": producer["name"]}]


def collections_for(items: list[Item]) -> dict[str, Collection]:
    """Collections by id, in id order (the order they are embedded in the file metadata)."""
    grouped: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        grouped[item["collection"]].append(item)
    return {cid: collection_for(grouped[cid]) for cid in sorted(grouped)}
