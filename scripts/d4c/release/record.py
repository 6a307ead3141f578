"""The release record (releases/<id>/<version>.json): the manifest plus where it all went.

Validated against the release schema (d4c.schemas) before it is written (temp + rename),
with sorted keys and 2-space indent like the manifest, so a rerun writes the same bytes.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from d4c import canonical, model, schemas
from d4c.atomic import atomic_write
from d4c.release.targets.base import ReleaseFile
from d4c.release.torrent import TorrentInfo

DESCRIPTIVE = model.DESCRIPTIVE


def schema(root: Path | None = None) -> dict[str, Any]:
    """The release record schema, from the installed package (`root` is not used)."""
    return schemas.load("release")


def build_record(*, dataset_id: str, version: str, released_at: str, manifest: Mapping[str, Any],
                 recipe: Mapping[str, Any], files: list[ReleaseFile],
                 urls: Mapping[str, Mapping[str, str]], torrents: list[TorrentInfo],
                 sources: list[dict[str, Any]], facts: Mapping[str, Mapping[str, Any]],
                 retain: Mapping[str, str] | None = None,
                 storage: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Assemble the record; `urls` is target -> file name -> URL, `facts` target -> hook results,
    `retain` target -> `all`|`latest` in config order (the catalog picks main hrefs by it),
    `storage` target -> file name -> s3:// address (the catalog's s3 alternates)."""
    merged: dict[str, Any] = {}
    for name in facts:  # config order: the first target to report a DOI wins
        for key, value in facts[name].items():
            merged.setdefault(key, value)
    bundle = next(f for f in files if f.role == "bundle")
    return {
        "record_version": 1,
        "id": dataset_id,
        "version": version,
        "released_at": released_at,
        "manifest": dict(manifest),
        "metadata": {k: recipe[k] for k in DESCRIPTIVE if k in recipe},
        "doi": merged.get("doi"),
        "concept_doi": merged.get("concept_doi"),
        "github_release": merged.get("github_release"),
        "bundle_sha256": bundle.sha256,
        "targets": {name: dict(f) for name, f in facts.items() if f},
        **({"mirrors": [{"name": name, "retain": r} for name, r in retain.items()]} if retain else {}),
        "files": [
            {"role": f.role, "name": f.name, "file": f.file, "size": f.size, "sha256": f.sha256,
             "md5": f.md5, "media_type": f.media_type,
             "urls": {t: u[f.file] for t, u in urls.items() if f.file in u},
             **({"storage": s} if (s := {t: u[f.file] for t, u in (storage or {}).items()
                                         if f.file in u}) else {})}
            for f in files
        ],
        "torrents": [{"file": t.file, "infohash": t.infohash, "magnet": t.magnet,
                      "piece_size": t.piece_size} for t in torrents],
        "sources": sources,
    }


def write_record(path: Path, record: dict[str, Any], root: Path | None = None) -> bool:
    """Validate and write atomically; False when the same bytes are already there."""
    model.ReleaseRecord.from_doc(record, where=str(path))  # the schemas, and one shape
    raw = canonical.encode(record)
    if path.is_file() and path.read_bytes() == raw:
        return False
    atomic_write(path, data=raw)
    return True
