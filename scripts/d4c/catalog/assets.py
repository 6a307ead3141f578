"""Release files -> STAC assets: which copy is the main href, which are alternates.

The main href must stay valid for as long as the version exists, so it is a copy on a
target that keeps every version (`retain: all`), the primary (first in the targets
config) first, an https URL before any other. Every other copy is an `alternate`
(alternate-assets, map form, by target name), and a data asset also names its torrent.
The main copy's target name is the asset's `d4c:mirror`, so every copy has a name.
A copy on a `retain: latest` target is marked `d4c:retain: "latest"`: that store
deletes it when the next version is released, so `link_versions` drops it from every
item but the one released last (the only version that store still holds).
"""
from __future__ import annotations

from typing import Any

from d4c.catalog.records import Record
from d4c.errors import D4CError

ASSET_ROLE = {"data": "data", "torrent": "torrent", "manifest": "metadata",
              "provenance": "metadata", "bundle": "source"}
TORRENT = "torrent"  # the alternate key of a data asset's torrent
S3_SUFFIX = "-s3"  # `<target>-s3`: the alternate key of a copy's s3:// address
RETAIN = "d4c:retain"
MIRROR = "d4c:mirror"  # the target name of the copy the main href points at
_HTTPS = "https://"


def retention(record: Record) -> list[tuple[str, str]]:
    """(target name, retain) in config order, the primary first.

    Records written before `mirrors` existed say nothing of retention: their targets
    are taken as keeping every version, in name order (JSON key order means nothing).
    """
    mirrors = record.get("mirrors")
    if mirrors:
        return [(str(m["name"]), str(m.get("retain") or "all")) for m in mirrors]
    names = sorted({t for f in record["files"] for t in f.get("urls") or {}})
    return [(name, "all") for name in names]


class _Targets:
    """A record's targets, worked out once for all of its files."""

    def __init__(self, order: list[tuple[str, str]]) -> None:
        self.names = [name for name, _ in order]
        self.known = set(self.names)
        self.latest_only = {name for name, retain in order if retain == "latest"}
        self.kept = [name for name, retain in order if retain == "all"]


def _main_copy(urls: dict[str, str], targets: _Targets, unknown: list[str]) -> str | None:
    """The target whose copy is the main href: kept for this version, https first. Targets
    the record does not list (`unknown`) count as keeping every version."""
    kept = [name for name in targets.kept if name in urls] + unknown
    if not kept:  # only retain-latest copies: the best there is (the plan should refuse this)
        kept = [name for name in targets.names if name in urls]
    for name in kept:  # a loop, not next(genexpr): 60k files a 10k catalog
        if urls[name].startswith(_HTTPS):
            return name
    return kept[0] if kept else None


def _asset_key(role: str, name: str, file: str, by_file: dict[str, str]) -> str:
    if role == "data":
        return name
    if role == "torrent":  # `<artifact file>.torrent` -> torrent-<output name>
        target = by_file.get(file[: -len(".torrent")]) if file.endswith(".torrent") else None
        if target:
            return f"torrent-{target}"
    return role if name in (role, "") else f"{role}-{name}"


def _asset(f: dict[str, Any], targets: _Targets) -> dict[str, Any]:
    urls: dict[str, str] = dict(f.get("urls") or {})
    latest_only = targets.latest_only
    unknown = [] if targets.known.issuperset(urls) else sorted(set(urls) - targets.known)
    ordered = [n for n in targets.names if n in urls] + unknown
    main = _main_copy(urls, targets, unknown)
    role = f.get("role") or "data"
    asset: dict[str, Any] = {
        "href": urls[main] if main else f["file"],
        "type": f["media_type"],  # as the record holds it (d4c.build.manifest)
        "title": f["file"],
        "roles": [ASSET_ROLE.get(role, role)],
        "file:size": f["size"],
        "file:checksum": "1220" + f["sha256"],
    }
    if main:  # which copy the href is: health, repair and nodes attribute it by this name
        asset[MIRROR] = main
    if main in latest_only:
        asset[RETAIN] = "latest"
    alternate = {}
    for name in ordered:
        if name != main:
            alt = {"href": urls[name]}
            if name in latest_only:
                alt[RETAIN] = "latest"
            alternate[name] = alt
    for name, uri in sorted((f.get("storage") or {}).items()):  # Portolan: https href, s3:// alternates
        key = f"{name}{S3_SUFFIX}"
        if key in urls:
            raise D4CError(f"a target is named {key!r}, the key of {name!r}'s s3:// alternate",
                           hint="rename that target")
        alternate[key] = {"href": uri, **({RETAIN: "latest"} if name in latest_only else {})}
    if alternate:
        asset["alternate"] = alternate
    return asset


def assets_of(record: Record) -> dict[str, Any]:
    """Every file of the record as an asset, keyed as docs/catalog.md lists."""
    files = record["files"]
    targets = _Targets(retention(record))
    by_file = {f["file"]: f.get("name") or f["file"]
               for f in files if f.get("role", "data") == "data"}
    assets: dict[str, Any] = {}
    for f in files:
        role = f.get("role") or "data"
        key = _asset_key(role, f.get("name") or f["file"], f["file"], by_file)
        if key in assets:
            raise D4CError(f"{record['id']} {record['version']}: two files map to asset {key!r}",
                           hint="give each file in the record a distinct name")
        assets[key] = _asset(f, targets)
    for key, asset in assets.items():  # the torrent is one more way to get a data file
        torrent = assets.get(f"torrent-{key}")
        if "data" in asset["roles"] and torrent is not None:
            if TORRENT in targets.known:
                raise D4CError(f"a target is named {TORRENT!r}, the key of the torrent alternate",
                               hint="rename that target in the targets config")
            alt = {"href": torrent["href"]}  # its type and size: the torrent-<name> asset
            if RETAIN in torrent:
                alt[RETAIN] = torrent[RETAIN]
            asset.setdefault("alternate", {})[TORRENT] = alt
    return assets


def drop_latest_only(assets: dict[str, Any]) -> dict[str, Any]:
    """The assets of a version that is no longer the one released last.

    Its copies on `retain: latest` targets are gone (or about to be): no alternate may
    name them. A main href on such a target (a release with no target keeping every
    version) is kept, as there is nothing better to point at.
    """
    out = {}
    for key, asset in assets.items():
        alternate = asset.get("alternate")
        if alternate and any(a.get(RETAIN) for a in alternate.values()):
            kept = {n: a for n, a in alternate.items() if not a.get(RETAIN)}
            asset = {k: v for k, v in asset.items() if k != "alternate"}
            if kept:
                asset["alternate"] = kept
        out[key] = asset
    return out
