"""The catalog site's pages, as HTML text (d4c.catalog.site has the views).

Every value from the catalog or the health file goes through `esc` (text and attributes)
or `json_block` (the map's data); only http(s) hrefs become links; links between pages
and to the assets are relative, so the folder works from disk and from any web server.
"""
from __future__ import annotations

import html
import json
from typing import Any

from d4c.catalog.site import AssetView, CopyView, DatasetView, HealthView, VersionView

BAD = {"missing", "refused", "corrupt", "unreachable", "changed"}
# Scripts only from the site's own folder; styles inline too (Leaflet positions by style).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:")
MAP_SCRIPTS = ("leaflet/leaflet.js", "topojson-client/topojson-client.min.js",
               "world-atlas/land-110m.js", "site.js")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def json_block(data: Any) -> str:
    """JSON inside <script type="application/json">: `<`, `>` and `&` as \\u escapes, so no
    text can close the element; JSON.parse reads them back."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="d4c-footprints">{text}</script>'


def href_of(url: str, text: str) -> str:
    """A link for an http(s) URL; any other address (s3://, javascript:) is shown as text."""
    if url.startswith(("https://", "http://")):
        return f'<a href="{esc(url)}">{esc(text)}</a>'
    return f'<span>{esc(text)}: <code>{esc(url)}</code></span>' if url else ""


def size_text(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size = size / 1024  # type: ignore[assignment]
    return ""


def badge(status: str | None) -> str:
    if status is None:
        return ""
    kind = "ok" if status == "ok" else "bad" if status in BAD else ""
    return f' <span class="badge {kind}">{esc(status)}</span>'


def page(title: str, body: str, *, depth: int, with_map: bool) -> str:
    up = "../" * depth
    scripts = "".join(f'<script src="{up}assets/{s}"></script>\n' for s in MAP_SCRIPTS) \
        if with_map else ""
    css = f'<link rel="stylesheet" href="{up}assets/leaflet/leaflet.css">\n' if with_map else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n{css}"
        f'<link rel="stylesheet" href="{up}assets/site.css">\n</head>\n<body>\n'
        f'<header><nav><a href="{up}index.html">Datasets / Jeux de données</a>'
        f'<a href="{up}health.html">Mirror health / État des copies</a></nav></header>\n'
        f"<main>\n{body}</main>\n"
        '<footer>Data for Canada. Built by <code>d4c catalog site</code> from the STAC '
        f'GeoParquet catalog. Map: Leaflet, land outline Natural Earth; see <a href="{up}'
        'assets/LICENSES.txt">licences</a>.</footer>\n'
        f"{scripts}</body>\n</html>\n")


def footprints(datasets: list[DatasetView], *, depth: int) -> list[dict[str, Any]]:
    up = "../" * depth
    out = []
    for d in datasets:
        v = d.latest
        if v.bbox and len(v.bbox) == 4:
            out.append({"bbox": [float(x) for x in v.bbox], "label": f"{d.title} ({v.version})",
                        "href": f"{up}datasets/{d.id}.html", "at_risk": bool(v.at_risk)})
    return out


def health_cell(v: VersionView) -> str:
    if v.at_risk is None:
        return '<span class="badge">not checked</span>'
    risk = '<span class="badge risk">at risk</span>' if v.at_risk else '<span class="badge ok">ok</span>'
    return f"{risk} {esc(v.copies_ok)} copies pass"


def overview(datasets: list[DatasetView], health: HealthView | None) -> str:
    rows = "".join(
        f'<tr><td><a href="datasets/{esc(d.id)}.html">{esc(d.title)}</a><br>'
        f'<span class="fr" lang="fr">{esc(d.title_fr)}</span></td>'
        f"<td><code>{esc(d.id)}</code></td><td>{esc(d.latest.version)}</td>"
        f"<td>{len(d.versions)}</td><td>{health_cell(d.latest)}</td></tr>\n" for d in datasets)
    at_risk = sum(1 for d in datasets for v in d.versions if v.at_risk)
    checked = f"from <code>{esc(health.name)}</code>, checked {esc(health.checked_at)}" \
        if health else "from the catalog's <code>d4c:at_risk</code> fields"
    body = (
        "<h1>Data for Canada: open geospatial data</h1>\n"
        '<p class="fr" lang="fr">Données géospatiales ouvertes</p>\n'
        f"<p>{len(datasets)} datasets, {sum(len(d.versions) for d in datasets)} versions. "
        f'{at_risk} versions at risk ({checked}): <a href="health.html">mirror health</a>.</p>\n'
        '<div id="map" class="map" role="img" aria-label="Dataset footprints"></div>\n'
        f"{json_block(footprints(datasets, depth=0))}\n"
        "<h2>Datasets / Jeux de données</h2>\n<table>\n<thead><tr><th>Title / Titre</th>"
        "<th>Id</th><th>Latest</th><th>Versions</th><th>Copies (latest)</th></tr></thead>\n"
        f"<tbody>\n{rows}</tbody>\n</table>\n")
    return page("Data for Canada catalog", body, depth=0, with_map=True)


def copy_links(asset: AssetView) -> str:
    def one(c: CopyView) -> str:
        return href_of(c.href, c.mirror) + badge(c.status)

    parts = [one(c) for c in asset.copies]
    if asset.torrent is not None:
        parts.append(one(asset.torrent))
    return " ".join(parts)


def version_block(d: DatasetView, v: VersionView) -> str:
    tag = " (latest)" if v.item_id == d.latest_id else " (deprecated)" if v.deprecated else ""
    doi = href_of(f"https://doi.org/{v.doi}", v.doi) if v.doi else "no DOI"
    cite = f'<p class="citation">{esc(v.citation)}</p>\n' if v.citation else ""
    reasons = "".join(f"<li>{esc(r)}</li>" for r in v.reasons)
    checked = f", last verified {esc(v.last_verified)}" if v.last_verified else ""
    rows = "".join(
        f"<tr><td><code>{esc(a.title)}</code><br>{esc(', '.join(a.roles))}</td>"
        f"<td>{esc(size_text(a.size))}</td><td><code>{esc(a.sha256 or '')}</code></td>"
        f'<td class="links">{copy_links(a)}</td></tr>\n' for a in v.assets)
    return (
        f'<section class="version" id="v{esc(v.version)}">\n'
        f"<h3>Version {esc(v.version)}{tag}</h3>\n"
        f"<p>Released {esc(v.created)}. DOI: {doi}. Health: {health_cell(v)}{checked}.</p>\n"
        f"{'<ul>' + reasons + '</ul>' if reasons else ''}{cite}"
        "<table>\n<thead><tr><th>File</th><th>Size</th><th>sha256</th>"
        f"<th>Download (per mirror)</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n"
        "</section>\n")


def dataset_page(d: DatasetView) -> str:
    boxes = [{"bbox": [float(x) for x in v.bbox], "label": f"{d.title} ({v.version})",
              "href": None, "at_risk": bool(v.at_risk)} for v in d.versions
             if v.bbox and len(v.bbox) == 4]
    body = (
        f"<h1>{esc(d.title)}</h1>\n"
        f'<p class="fr" lang="fr"><strong>{esc(d.title_fr)}</strong></p>\n'
        f"<p>{esc(d.description)}</p>\n"
        f'<p class="fr" lang="fr">{esc(d.description_fr)}</p>\n'
        f"<p>Id <code>{esc(d.id)}</code>. License: {esc(d.license)}. "
        f"Providers: {esc(', '.join(d.providers))}. Keywords: {esc(', '.join(d.keywords))}.</p>\n"
        '<div id="map" class="map small" role="img" aria-label="Footprints"></div>\n'
        f"{json_block(boxes)}\n<h2>Versions</h2>\n"
        + "".join(version_block(d, v) for v in d.versions))
    return page(f"{d.title}: Data for Canada", body, depth=1, with_map=True)


def health_page(datasets: list[DatasetView], health: HealthView | None) -> str:
    risky = [(d, v) for d in datasets for v in d.versions if v.at_risk]
    items = "".join(
        f'<li><a href="datasets/{esc(d.id)}.html#v{esc(v.version)}">{esc(d.title)} '
        f"{esc(v.version)}</a>: {esc('; '.join(v.reasons) or f'{v.copies_ok} copies pass')}</li>\n"
        for d, v in risky)
    body = "<h1>Mirror health</h1>\n<p class=\"fr\" lang=\"fr\">État des copies</p>\n"
    if health is None:
        body += ("<p>No health file was given: the at-risk flags are the catalog's "
                 "(<code>d4c mirrors annotate</code>).</p>\n")
    else:
        counts = "".join(f"<tr><td>{esc(s)}{badge(s)}</td><td>{n}</td></tr>\n"
                         for s, n in health.counts.items())
        fails = "".join(
            f"<tr><td><code>{esc(r['file'])}</code></td><td>{esc(r['mirror'])} ({esc(r['host'])})"
            f"</td><td>{esc(r['status'])}</td><td>tier {esc(r['tier'])} {esc(r['check'])}</td>"
            f"<td>{esc(r['evidence'] or '')}</td></tr>\n" for r in health.failures)
        body += (
            f"<p>From <code>{esc(health.name)}</code>, checked {esc(health.checked_at)}.</p>\n"
            "<h2>Copies by status</h2>\n<table>\n<thead><tr><th>Status</th><th>Copies</th></tr>"
            f"</thead>\n<tbody>\n{counts}</tbody>\n</table>\n"
            f"<h2>Failing copies: {len(health.failures)}</h2>\n<table>\n<thead><tr><th>File</th>"
            "<th>Mirror</th><th>Status</th><th>Check</th><th>Evidence</th></tr></thead>\n"
            f"<tbody>\n{fails}</tbody>\n</table>\n")
    body += f"<h2>Versions at risk: {len(risky)}</h2>\n<ul>\n{items}</ul>\n"
    return page("Mirror health: Data for Canada", body, depth=0, with_map=False)
