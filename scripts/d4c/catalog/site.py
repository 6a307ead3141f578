"""`d4c catalog site`: a static site for people, built from the catalog and the latest
health file (docs/catalog.md "The site").

This module reads the inputs into plain views (one per dataset, version, asset and copy);
`site_html` renders them and `site_write` lays out the folder. Everything in a catalog
or health file is untrusted text: the views keep it as text and the renderer escapes it.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyarrow.lib import ArrowException

from d4c.catalog.items import Item
from d4c.errors import D4CError

# A collection id becomes a file name: only the characters dataset ids use (no /, no ..).
SAFE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,199}")
# Only these schemes are links; anything else (s3://, javascript:, data:) is shown as text.
LINK_SCHEMES = ("https://", "http://")
ROLE_ORDER = {"data": 0, "torrent": 1, "metadata": 2, "source": 3}


@dataclass
class CopyView:
    mirror: str  # the target name: the asset's d4c:mirror ("main" if it has none), or the alternate's key
    href: str
    status: str | None = None  # the health file's verdict for this copy, None if not checked

    @property
    def is_link(self) -> bool:
        return self.href.startswith(LINK_SCHEMES)


@dataclass
class AssetView:
    key: str
    title: str
    roles: list[str]
    size: int | None
    sha256: str | None
    copies: list[CopyView]
    torrent: CopyView | None = None


@dataclass
class VersionView:
    item_id: str
    version: str
    created: str
    deprecated: bool
    doi: str | None
    citation: str | None
    bbox: list[float] | None
    assets: list[AssetView]
    copies_ok: int | None = None
    at_risk: bool | None = None
    last_verified: str | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class DatasetView:
    id: str
    title: str
    title_fr: str
    description: str
    description_fr: str
    license: str
    providers: list[str]
    keywords: list[str]
    versions: list[VersionView]  # newest first
    latest_id: str  # the latest version: the highest that is not a pre-release

    @property
    def latest(self) -> VersionView:
        return next(v for v in self.versions if v.item_id == self.latest_id)


@dataclass
class HealthView:
    name: str  # the health file's name, e.g. 2026-12-01.parquet
    checked_at: str
    verdicts: dict[tuple[str, str], str]  # (item id, href) -> copy status
    risks: dict[str, Any]  # item id -> d4c.mirrors.health.Risk
    failures: list[dict[str, Any]]
    counts: dict[str, int]  # copy status -> copies


def load_catalog(source: str) -> tuple[list[Item], dict[str, Any]]:
    """Items and collections of a local catalog file or an https:// / s3:// URL."""
    from d4c.catalog.append import read_catalog
    from d4c.catalog.writer import table_to_items

    if "://" in source:
        from d4c.catalog.query import open_remote
        from d4c.catalog.sidecar import beside_remote

        table, colls = read_catalog(open_remote(source), beside_remote(source))
    elif not Path(source).is_file():
        raise D4CError(f"no catalog at {source}", hint="run `d4c catalog build` or pass --catalog")
    else:
        try:
            table, colls = read_catalog(source)
        except (ArrowException, OSError, ValueError, TypeError) as exc:  # not Parquet, not ours
            raise D4CError(f"{source} is not a catalog file: {str(exc).splitlines()[0]}",
                           hint="pass the catalog.parquet that `d4c catalog build` writes") from None
    return table_to_items(table), colls


def load_health(path: Path | None, min_copies: int) -> HealthView | None:
    """The health file (a folder means its newest <date>.parquet), as verdicts and risks."""
    from d4c.mirrors import health

    if path is None:
        return None
    file = health.latest(path) if path.is_dir() else path
    if file is None or not file.is_file():
        raise D4CError(f"no health file at {path}", hint="run `d4c mirrors check` first")
    try:
        rows = health.read(file)
        verdict = health.verdicts(rows)
        risk = health.risks(rows, min_copies)
        failing = health.failures(rows)
    except (ArrowException, OSError, KeyError, ValueError, TypeError) as exc:  # another shape
        raise D4CError(f"{file} is not a health file: {str(exc).splitlines()[0]}",
                       hint="pass a health/<date>.parquet written by `d4c mirrors check`") from None
    return HealthView(
        name=file.name, checked_at=max((str(r["checked_at"] or "") for r in rows), default=""),
        verdicts={(k[0], k[3]): s for k, s in sorted(verdict.items())}, risks=risk,
        failures=failing, counts=dict(sorted(Counter(verdict.values()).items())))


def _asset_view(item_id: str, key: str, asset: dict[str, Any],
                health: HealthView | None) -> AssetView:
    def copy(mirror: str, href: Any) -> CopyView:
        href = str(href or "")
        status = health.verdicts.get((item_id, href)) if health else None
        return CopyView(mirror, href, status)

    alternates = asset.get("alternate") or {}
    copies = [copy(str(asset.get("d4c:mirror") or "main"), asset.get("href"))]
    copies += [copy(str(name), alt.get("href")) for name, alt in sorted(alternates.items())
               if name != "torrent" and isinstance(alt, dict)]
    torrent = alternates.get("torrent")
    checksum = str(asset.get("file:checksum") or "")
    size = asset.get("file:size")
    return AssetView(
        key=key, title=str(asset.get("title") or key), roles=[str(r) for r in asset.get("roles") or []],
        size=size if isinstance(size, int) else None,
        sha256=checksum[4:] if checksum.startswith("1220") else None, copies=copies,
        torrent=copy("torrent", torrent.get("href")) if isinstance(torrent, dict) else None)


def _order(item: tuple[str, dict[str, Any]]) -> tuple[int, str]:
    roles = item[1].get("roles") or []
    return min((ROLE_ORDER.get(r, 9) for r in roles), default=9), item[0]


def version_view(item: Item, health: HealthView | None) -> VersionView:
    p = item.get("properties") or {}
    assets = sorted((item.get("assets") or {}).items(), key=_order)
    view = VersionView(
        item_id=str(item["id"]), version=str(p.get("version") or ""),
        created=str(p.get("created") or "")[:10], deprecated=bool(p.get("deprecated")),
        doi=p.get("sci:doi"), citation=p.get("sci:citation"), bbox=item.get("bbox"),
        assets=[_asset_view(str(item["id"]), k, a, health) for k, a in assets])
    risk = health.risks.get(view.item_id) if health else None
    if risk is not None:  # the health file given is the newest word on the copies
        view.copies_ok, view.at_risk = risk.copies_ok, risk.at_risk
        view.last_verified, view.reasons = risk.last_verified, list(risk.reasons)
    elif "d4c:at_risk" in p:  # else what `d4c mirrors annotate` wrote into the catalog
        view.copies_ok, view.at_risk = p.get("d4c:copies_ok"), bool(p["d4c:at_risk"])
        view.last_verified = p.get("d4c:last_verified")
    return view


def dataset_views(items: list[Item], collections: dict[str, Any],
                  health: HealthView | None) -> list[DatasetView]:
    """One view per collection, its versions newest first (the file is in SemVer order;
    the latest is the version without a `latest-version` link)."""
    by: dict[str, list[Item]] = {}
    for item in items:
        cid = str(item.get("collection") or "")
        if not SAFE_ID.fullmatch(cid):
            raise D4CError(f"catalog item {item.get('id')!r} has collection {cid!r}, which "
                           "cannot be a page name", hint="dataset ids use a-z, 0-9, _ and -")
        by.setdefault(cid, []).append(item)
    out = []
    for cid in sorted(by):
        versions = [version_view(i, health) for i in reversed(by[cid])]
        latest = next((i for i in by[cid] if not any(
            link.get("rel") == "latest-version" for link in i.get("links") or [])), by[cid][-1])
        text = {**(latest.get("properties") or {}), **_texts(collections.get(cid))}
        out.append(DatasetView(
            id=cid, title=str(text.get("title") or cid), title_fr=str(text.get("d4c:title_fr") or ""),
            description=str(text.get("description") or ""),
            description_fr=str(text.get("d4c:description_fr") or ""),
            license=str(text.get("license") or ""),
            providers=[str(p.get("name")) for p in text.get("providers") or [] if isinstance(p, dict)],
            keywords=[str(k) for k in text.get("keywords") or []], versions=versions,
            latest_id=str(latest["id"])))
    return out


def _texts(coll: Any) -> dict[str, Any]:
    """The collection's descriptive fields (from the latest version, as the catalog made it)."""
    keys = ("title", "d4c:title_fr", "description", "d4c:description_fr", "license",
            "providers", "keywords")
    return {k: coll[k] for k in keys if isinstance(coll, dict) and coll.get(k)}
