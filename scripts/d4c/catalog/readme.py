"""README.md (for people) and AGENTS.md (for programs) of the static tree's catalog and
collections, as Portolan asks: title, description, license and provenance, and where the
files are. Derived from the items and collections only, so they change with them."""
from __future__ import annotations

from typing import Any

from d4c.catalog.collections import Collection
from d4c.catalog.items import Item


def _latest(items: list[Item]) -> Item:
    return next((i for i in reversed(items)
                 if not any(lk["rel"] == "latest-version" for lk in i["links"])), items[-1])


def root_readme(collections: dict[str, Collection]) -> str:
    lines = ["# Data for Canada", "",
             "Every released version of every Data for Canada dataset, as a STAC catalog.",
             "Each dataset is a collection; each released version is an item whose assets",
             "are the files of that version, with their size and sha256 checksum.", "",
             "## Datasets", ""]
    lines += [f"- [{c.get('title', cid)}](./{cid}/README.md) (`{cid}`), license "
              f"{c.get('license', 'other')}" for cid, c in collections.items()]
    lines += ["", "Licenses and sources are given per dataset.", ""]
    return "\n".join(lines)


_ROOT_AGENTS = """# AGENTS

- `catalog.json` links one `collection.json` per dataset (`child` links).
- A collection links one item per released version (`item` links); item files are
  `<dataset id>_v<version, dots as dashes>.json` and never change once written,
  except their version links, `deprecated` and the alternates named below.
- The latest version is the item without a `latest-version` link.
- An asset's `href` is a copy kept for that version; `alternate` lists the other
  copies (a `d4c:retain: latest` copy exists only while its version is the newest).
- Check a download against `file:checksum` (`1220` + the sha256 hex digest).
- The same items, every version in one file: the STAC GeoParquet catalog
  (`d4c catalog query`).
"""


def root_agents() -> str:
    return _ROOT_AGENTS


def collection_readme(items: list[Item], coll: Collection) -> str:
    latest = _latest(items)["properties"]
    providers = coll.get("providers") or []
    source = ", ".join(f"{p['name']} ({', '.join(p.get('roles') or [])})" for p in providers)
    lines = [f"# {coll.get('title', coll['id'])}", "", str(coll.get("description", "")), ""]
    if coll.get("d4c:title_fr"):
        lines += [f"## {coll['d4c:title_fr']}", "", str(coll.get("d4c:description_fr", "")), ""]
    lines += [f"- License: {coll.get('license', 'other')}",
              f"- Source and provenance: {source or 'not stated'}",
              f"- Latest version: {latest['version']}"]
    if latest.get("sci:citation"):
        lines.append(f"- Cite as: {latest['sci:citation']}")
    lines += ["", "## Versions", ""]
    for item in reversed(items):
        p = item["properties"]
        doi = f", DOI {p['sci:doi']}" if p.get("sci:doi") else ""
        lines.append(f"- [{p['version']}](./{item['id']}.json), released {p['created'][:10]}{doi}")
    return "\n".join(lines + [""])


def collection_agents(items: list[Item], coll: Collection) -> str:
    latest = _latest(items)
    data = sorted(k for k, a in latest["assets"].items() if "data" in a.get("roles", []))
    lines: list[Any] = [
        f"# AGENTS: {coll['id']}", "",
        f"- Latest version: `./{latest['id']}.json` (version {latest['properties']['version']}).",
        f"- Data assets of each version: {', '.join(f'`{k}`' for k in data) or 'none'};",
        "  `torrent-<name>`, `manifest`, `bundle` (the source bundle to rebuild from).",
        "- Download `href`, or any `alternate`; verify `file:checksum` (`1220` + sha256).",
        "- Rebuild a version from its bundle: `d4c verify <bundle>` (docs/operators.md).", ""]
    return "\n".join(lines)
