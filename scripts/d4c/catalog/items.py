"""Release record -> STAC Item (a plain dict, STAC 1.1 JSON form). Pure functions.

An item depends on its own record only, except for the version relations (deprecated,
latest/predecessor/successor links), which `link_versions` derives from the set of
versions of one dataset. That split is what lets an append recompute one dataset and
still give the bytes a full rebuild gives.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from d4c import semver
from d4c.catalog.records import Record
from d4c.errors import D4CError

Item = dict[str, Any]

STAC_VERSION = "1.1.0"
EXT = {
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "sci": "https://stac-extensions.github.io/scientific/v1.0.0/schema.json",
    "version": "https://stac-extensions.github.io/version/v1.2.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "alternate": "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
    "d4c": "https://dataforcanada.org/stac/extensions/d4c/v1.0.0/schema.json",
}
ASSET_ROLE = {"data": "data", "torrent": "torrent", "manifest": "metadata",
              "provenance": "metadata", "bundle": "source"}
RELATION_RELS = ("latest-version", "predecessor-version", "successor-version")
_CRS84 = {"EPSG:4326", "OGC:CRS84", "CRS84"}


_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_UTC_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def item_id(dataset_id: str, version: str) -> str:
    return f"{dataset_id}/v{version}"


def stac_time(value: str, *, end: bool = False) -> str:
    """ISO date or date-time -> RFC 3339 in UTC with microseconds: the exact string the
    Parquet form (timestamp[us, UTC]) reads back as, so items round-trip unchanged."""
    try:
        parsed = datetime.fromisoformat(value)  # also rejects 2021-13-45
    except ValueError:
        raise D4CError(f"not an ISO date or date-time: {value!r}", hint="use 2021-05-11") from None
    if _DATE.fullmatch(value):  # a date: the whole day
        return f"{value}T23:59:59.000000Z" if end else f"{value}T00:00:00.000000Z"
    if _UTC_SECONDS.fullmatch(value):  # the release time's usual form: no strftime needed
        return f"{value[:19]}.000000Z"
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bbox(record: Record, meta: dict[str, Any]) -> list[float]:
    """Union of the outputs' bboxes in CRS84; else the recipe's spatial bbox."""
    boxes = []
    for out in record["manifest"].get("outputs") or []:
        box, crs = out.get("bbox"), out.get("crs")
        if not box or not crs:
            continue  # no extent, or an extent in an unknown CRS
        if str(crs).upper() not in _CRS84:
            from pyproj import Transformer  # only for projected outputs

            tr = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
            box = tr.transform_bounds(*box)
        boxes.append([float(v) for v in box])
    if not boxes:
        spatial = (meta.get("spatial") or {}).get("bbox")
        if not spatial:
            raise D4CError(
                f"{record['id']} {record['version']}: no spatial extent in the outputs or recipe",
                hint="add spatial.bbox (CRS84) to the recipe",
            )
        boxes.append([float(v) for v in spatial])
    if len(boxes) == 1:
        return boxes[0]
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _times(record: Record, meta: dict[str, Any]) -> dict[str, str | None]:
    """datetime, or start/end for a range; a lone start is the datetime; none: release time."""
    temporal = meta.get("temporal") or {}
    start, end = temporal.get("start"), temporal.get("end")
    if start and end and str(start) != str(end):
        return {"datetime": None, "start_datetime": stac_time(str(start)),
                "end_datetime": stac_time(str(end), end=True)}
    return {"datetime": stac_time(str(start or end or record["released_at"]))}


def _citation(record: Record, meta: dict[str, Any], title: str, year: str) -> str:
    names = [str(c["name"]) for c in meta.get("creators") or [] if c.get("name")]
    hosts = [p["name"] for p in meta.get("providers") or [] if "host" in (p.get("roles") or [])]
    text = f"{'; '.join(names) or 'Data for Canada'} ({year}). {title} (Version {record['version']})"
    text += f" [Data set]. {hosts[0] if hosts else 'Data for Canada'}."
    return text + (f" https://doi.org/{record['doi']}" if record.get("doi") else "")


def _asset_key(role: str, name: str, file: str, by_file: dict[str, str]) -> str:
    if role == "data":
        return name
    if role == "torrent":  # `<artifact file>.torrent` -> torrent-<output name>
        target = by_file.get(file[: -len(".torrent")]) if file.endswith(".torrent") else None
        if target:
            return f"torrent-{target}"
    return role if name in (role, "") else f"{role}-{name}"


def _assets(record: Record) -> dict[str, Any]:
    # Types are as schemas/release.schema.json guarantees; this runs once per version
    # (100,000 times in the benchmark), so no defensive conversions here.
    files = record["files"]
    by_file = {f["file"]: f.get("name") or f["file"]
               for f in files if f.get("role", "data") == "data"}
    assets: dict[str, Any] = {}
    for f in files:
        role, file = f.get("role") or "data", f["file"]
        key = _asset_key(role, f.get("name") or file, file, by_file)
        if key in assets:
            raise D4CError(f"{record['id']} {record['version']}: two files map to asset {key!r}",
                           hint="give each file in the record a distinct name")
        # Primary href: the first https mirror by target name, else the first by name
        # (JSON key order is not meaningful: records may be written with sorted keys).
        pairs = sorted(f["urls"].items()) if f.get("urls") else []
        primary = pairs[0] if pairs else ("", file)
        if primary[1][:8] != "https://":
            primary = next((p for p in pairs if p[1][:8] == "https://"), primary)
        asset: dict[str, Any] = {
            "href": primary[1],
            "type": f["media_type"],  # as the record holds it (the build's table, d4c.build.manifest)
            "title": file,
            "roles": [ASSET_ROLE.get(role, role)],
            "file:size": f["size"],
            "file:checksum": "1220" + f["sha256"],
        }
        if len(pairs) > 1:  # every other mirror is an alternate
            asset["alternate"] = {t: {"href": u} for t, u in pairs if t != primary[0]}
        assets[key] = asset
    return assets


def _provider(p: dict[str, Any]) -> dict[str, Any]:
    out = {"name": p["name"], "roles": list(p.get("roles") or ())}
    if p.get("url") is not None:
        out["url"] = p["url"]
    return out


def record_to_item(record: Record, meta: dict[str, Any]) -> Item:
    """One record -> one item, without the version relations (see `link_versions`)."""
    title, desc = meta.get("title") or {}, meta.get("description") or {}
    env = record["manifest"].get("environment") or {}
    software = dict(env.get("packages") or {})
    if env.get("python"):
        software["python"] = env["python"]
    props: dict[str, Any] = {
        **_times(record, meta),
        "created": stac_time(str(record["released_at"])),
        "title": str(title.get("en") or record["id"]),
        "description": str(desc.get("en") or title.get("en") or record["id"]),
        "license": str(meta.get("license") or "other"),
        "keywords": list(meta.get("keywords") or ()),
        "providers": [_provider(p) for p in meta.get("providers") or ()],
        "version": str(record["version"]),
        "deprecated": False,
    }
    if title.get("fr"):
        props["d4c:title_fr"] = str(title["fr"])
    if desc.get("fr"):
        props["d4c:description_fr"] = str(desc["fr"])
    if record.get("doi"):
        props["sci:doi"] = str(record["doi"])
    props["sci:citation"] = _citation(record, meta, props["title"], props["created"][:4])
    if record.get("concept_doi"):
        props["d4c:concept_doi"] = str(record["concept_doi"])
    if software:
        props["processing:software"] = dict(sorted(software.items()))
    links = [{"rel": "collection", "href": "./collection.json", "type": "application/json",
              "title": record["id"]}]
    if record.get("doi"):
        links.append({"rel": "cite-as", "href": f"https://doi.org/{record['doi']}",
                      "type": "text/html", "title": "DOI"})
    if record.get("github_release"):
        links.append({"rel": "related", "href": str(record["github_release"]),
                      "type": "text/html", "title": "GitHub release"})
    bbox = _bbox(record, meta)
    x0, y0, x1, y1 = bbox
    item: Item = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": item_id(record["id"], record["version"]),
        "geometry": {"type": "Polygon",
                     "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "bbox": bbox,
        "properties": props,
        "links": links,
        "assets": _assets(record),
        "collection": record["id"],
    }
    # What extensions_used(item) finds, known here without walking the item again.
    used = ["version", "sci"]  # version, deprecated and sci:citation are always set
    if item["assets"]:
        used.append("file")
    if "processing:software" in props:
        used.append("processing")
    if any(k in props for k in ("d4c:title_fr", "d4c:description_fr", "d4c:concept_doi")):
        used.append("d4c")
    if any("alternate" in a for a in item["assets"].values()):
        used.append("alternate")
    item["stac_extensions"] = sorted(EXT[name] for name in used)
    return item


def extensions_used(item: Item) -> list[str]:
    """The extension schema URLs an item's fields need: no more, no fewer."""
    assets = (item.get("assets") or {}).values()
    prefixes = {k.partition(":")[0] for k in item["properties"] if ":" in k}
    used = {"version"} | (prefixes & {"sci", "processing", "d4c"})  # version: always set
    if any("file:size" in a or "file:checksum" in a for a in assets):
        used.add("file")
    if any(a.get("alternate") for a in assets):
        used.add("alternate")
    return sorted(EXT[name] for name in used)


def _version_link(rel: str, item: Item, version: str) -> dict[str, str]:
    return {"rel": rel, "href": f"./v{version}.json", "type": "application/geo+json",
            "title": f"{item['collection']} v{version}"}


def link_versions(items: list[Item]) -> list[Item]:
    """Set deprecated and the version links across one dataset's items; SemVer order out."""
    ordered = sorted(items, key=lambda i: semver.key(i["properties"]["version"]))
    versions = [i["properties"]["version"] for i in ordered]
    latest = semver.latest(versions) or ""
    for n, item in enumerate(ordered):
        v = versions[n]
        links = [lk for lk in item["links"] if lk["rel"] not in RELATION_RELS]
        if v != latest:
            links.append(_version_link("latest-version", item, latest))
        if n > 0:
            links.append(_version_link("predecessor-version", item, versions[n - 1]))
        if n + 1 < len(ordered):
            links.append(_version_link("successor-version", item, versions[n + 1]))
        item["links"] = links
        item["properties"]["deprecated"] = semver.key(v) < semver.key(latest)
    return ordered


def items_from_records(
    records: Iterable[Record], metadata: Callable[[Record], dict[str, Any]]
) -> list[Item]:
    """All items, sorted by collection then SemVer, version relations set."""
    by_dataset: dict[str, dict[str, Item]] = defaultdict(dict)
    for record in records:
        version = str(record["version"])
        semver.parse(version)  # reject a non-SemVer version early, with its name
        if version in by_dataset[record["id"]]:
            raise D4CError(f"two release records for {record['id']} {version}")
        by_dataset[record["id"]][version] = record_to_item(record, metadata(record))
    out: list[Item] = []
    for dataset_id in sorted(by_dataset):
        out.extend(link_versions(list(by_dataset[dataset_id].values())))
    return out
