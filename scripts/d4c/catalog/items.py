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
from d4c.catalog.assets import RETAIN, assets_of, drop_latest_only
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
    "d4c": "https://dataforcanada.org/stac/extensions/d4c/v1.1.0/schema.json",
}
# Every published version of our extension -> its schema (d4c.schemas). A published version
# never changes: new fields make a new version, and items declare the newest (EXT["d4c"]).
D4C_VERSIONS = {
    "https://dataforcanada.org/stac/extensions/d4c/v1.0.0/schema.json": "stac-d4c-v1.0.0",
    EXT["d4c"]: "stac-d4c",
}
RELATION_RELS = ("latest-version", "predecessor-version", "successor-version")
_CRS84 = {"EPSG:4326", "OGC:CRS84", "CRS84"}
_D4C_FIELDS = ("d4c:title_fr", "d4c:description_fr", "d4c:concept_doi", "d4c:retention_until")


_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_UTC_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


_NOT_ID = re.compile(r"[^a-z0-9-]")


def item_id(dataset_id: str, version: str) -> str:
    """`ca_x_y` 1.2.0 -> `ca_x_y_v1-2-0`: one path segment (a STAC API's
    /collections/{c}/items/{id}) of only lowercase letters, digits, `-` and `_` (STAC's
    searchable identifiers), with no dot, so `<id>.json` names the item's file."""
    return f"{dataset_id}_v{_NOT_ID.sub('-', version.lower())}"


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


def _provider(p: dict[str, Any]) -> dict[str, Any]:
    out = {"name": p["name"], "roles": list(p.get("roles") or ())}
    if p.get("url") is not None:
        out["url"] = p["url"]
    return out


def _providers(providers: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe's providers, the host last (STAC's and Portolan's convention)."""
    out = [_provider(p) for p in providers]
    return sorted(out, key=lambda p: "host" in p["roles"])  # stable: the rest keep their order


def _software(record: Record) -> dict[str, Any]:
    """The manifest's packages and Python version, by name."""
    env = record["manifest"].get("environment") or {}
    software = dict(env.get("packages") or {})
    if env.get("python"):
        software["python"] = env["python"]
    return dict(sorted(software.items()))


def _properties(record: Record, meta: dict[str, Any]) -> dict[str, Any]:
    """The item's properties: times, texts, citation, retention and software."""
    title, desc = meta.get("title") or {}, meta.get("description") or {}
    props: dict[str, Any] = {
        **_times(record, meta),
        "created": stac_time(str(record["released_at"])),
        "title": str(title.get("en") or record["id"]),
        "description": str(desc.get("en") or title.get("en") or record["id"]),
        "license": str(meta.get("license") or "other"),
        "keywords": list(meta.get("keywords") or ()),
        "providers": _providers(meta.get("providers") or ()),
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
    retention = meta.get("retention") or {}
    if retention.get("until"):  # a keep-until or takedown date: the version is at risk
        props["d4c:retention_until"] = str(retention["until"])
        props["d4c:retention_reason"] = str(retention.get("reason") or "")
    software = _software(record)
    if software:
        props["processing:software"] = software
    return props


def _links(record: Record) -> list[dict[str, str]]:
    """root, parent and collection, then the DOI and the GitHub release when there are."""
    links = [{"rel": "root", "href": "../catalog.json", "type": "application/json",
              "title": "Data for Canada"},
             {"rel": "parent", "href": "./collection.json", "type": "application/json",
              "title": record["id"]},
             {"rel": "collection", "href": "./collection.json", "type": "application/json",
              "title": record["id"]}]
    if record.get("doi"):
        links.append({"rel": "cite-as", "href": f"https://doi.org/{record['doi']}",
                      "type": "text/html", "title": "DOI"})
    if record.get("github_release"):
        links.append({"rel": "related", "href": str(record["github_release"]),
                      "type": "text/html", "title": "GitHub release"})
    return links


def _extensions(props: dict[str, Any], assets: dict[str, Any]) -> list[str]:
    """What extensions_used(item) finds, known here without walking the item again."""
    used = ["version", "sci"]  # version, deprecated and sci:citation are always set
    if assets:
        used.append("file")
    if "processing:software" in props:
        used.append("processing")
    if any(k in props for k in _D4C_FIELDS) or d4c_on_assets(assets):
        used.append("d4c")
    if any("alternate" in a for a in assets.values()):
        used.append("alternate")
    return sorted(EXT[name] for name in used)


def record_to_item(record: Record, meta: dict[str, Any]) -> Item:
    """One record -> one item, without the version relations (see `link_versions`)."""
    props, links = _properties(record, meta), _links(record)
    bbox = _bbox(record, meta)
    x0, y0, x1, y1 = bbox
    assets = assets_of(record)  # after the bbox, as before: a record bad in both says the same
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": _extensions(props, assets),
        "id": item_id(record["id"], record["version"]),
        "geometry": {"type": "Polygon",
                     "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "bbox": bbox,
        "properties": props,
        "links": links,
        "assets": assets,
        "collection": record["id"],
    }


def _retains(assets: dict[str, Any]) -> bool:
    """Whether an asset or an alternate carries d4c:retain."""
    return any(RETAIN in a or any(RETAIN in alt for alt in (a.get("alternate") or {}).values())
               for a in assets.values())


def d4c_on_assets(assets: dict[str, Any]) -> bool:
    """Whether an asset or an alternate carries a d4c field (d4c:mirror, d4c:retain)."""
    def has(obj: dict[str, Any]) -> bool:
        return any(k.startswith("d4c:") for k in obj)

    return any(has(a) or any(has(alt) for alt in (a.get("alternate") or {}).values())
               for a in assets.values())


def extensions_used(item: Item) -> list[str]:
    """The extension schema URLs an item's fields need: no more, no fewer."""
    assets = (item.get("assets") or {}).values()
    prefixes = {k.partition(":")[0] for k in item["properties"] if ":" in k}
    used = {"version"} | (prefixes & {"sci", "processing", "d4c"})  # version: always set
    if d4c_on_assets(item.get("assets") or {}):
        used.add("d4c")
    if any("file:size" in a or "file:checksum" in a for a in assets):
        used.add("file")
    if any(a.get("alternate") for a in assets):
        used.add("alternate")
    return sorted(EXT[name] for name in used)


def _version_link(rel: str, item: Item, version: str) -> dict[str, str]:
    return {"rel": rel, "href": f"./{item_id(item['collection'], version)}.json",
            "type": "application/geo+json",
            "title": f"{item['collection']} v{version}"}


def _newest(ordered: list[Item]) -> Item:
    """The item released last (latest `created`; of those, the highest precedence, the first
    such in SemVer order), from items in SemVer order: max() by (created, SemVer) would
    compare versions at every tie of `created`."""
    created = max(i["properties"]["created"] for i in ordered)
    tied = [i for i in ordered if i["properties"]["created"] == created]
    top = len(tied) - 1
    while top and not semver.key(tied[top - 1]["properties"]["version"]) < \
            semver.key(tied[-1]["properties"]["version"]):
        top -= 1
    return tied[top]


def link_versions(items: list[Item]) -> list[Item]:
    """Set deprecated and the version links across one dataset's items; SemVer order out.

    Only the version released last keeps its copies on `retain: latest` targets: those
    stores delete every other version (d4c.catalog.assets).
    """
    ordered = sorted(items, key=lambda i: semver.key(i["properties"]["version"]))
    versions = [i["properties"]["version"] for i in ordered]
    ids = [i["id"] for i in ordered]
    if len(set(ids)) < len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise D4CError(f"two versions of {ordered[0]['collection']} give the item id {dup}",
                       hint="versions that differ only in case or in '.' against '-' "
                            "cannot share a catalog; release under another version")
    # From the one sort: semver.latest's pick, the deprecated ones and the newest release,
    # with a handful of comparisons, not one a version (SemVer's are slow, in Python).
    stable = [v for v in versions if not semver.is_prerelease(v)]
    latest = (stable or versions)[-1]
    first = versions.index(latest)  # versions of the latest's precedence (build metadata) are not deprecated
    while first and not semver.key(versions[first - 1]) < semver.key(latest):
        first -= 1
    newest = _newest(ordered)
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
        item["properties"]["deprecated"] = n < first
        if item is not newest and _retains(item["assets"]):
            item["assets"] = drop_latest_only(item["assets"])
            item["stac_extensions"] = extensions_used(item)
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
