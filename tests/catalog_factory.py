"""Realistic release records (docs/architecture.md "Release record") for the catalog tests.

Hashes are real digests of deterministic stand-in bytes, so every field has the shape
the release step writes; nothing here depends on the release step's code.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from d4c.build.manifest import MEDIA_TYPES

TARGETS = ("s3", "zenodo", "local")


def _h(text: str, algo: str = "sha256") -> str:
    return hashlib.new(algo, text.encode()).hexdigest()


def make_record(
    dataset_id: str,
    version: str,
    *,
    outputs: tuple[tuple[str, str], ...] = (("capitals", "geoparquet"),),
    bbox: list[float] | None = None,
    crs: str | None = "EPSG:4326",
    temporal: dict[str, str] | None = None,
    targets: tuple[str, ...] = TARGETS,
    doi: str | None = "auto",
    released_at: str = "2026-11-26T12:00:00Z",
    with_metadata: bool = True,
) -> dict[str, Any]:
    """One record; `outputs` are (name, format) pairs, as in a recipe."""
    ext = {"geoparquet": "parquet", "parquet": "parquet", "csv": "csv", "cog": "tif",
           "pmtiles": "pmtiles", "flatgeobuf": "fgb"}
    single = len(outputs) == 1
    base = f"{dataset_id}_v{version}"
    seed = f"{dataset_id}/{version}"
    manifest_outputs = []
    files = []
    torrents = []

    def urls(file: str) -> dict[str, str]:
        return {t: f"https://{t}.example.org/{dataset_id}/v{version}/{file}" for t in targets}

    for n, (name, fmt) in enumerate(outputs):
        file = f"{base}.{ext[fmt]}" if single else f"{base}_{name}.{ext[fmt]}"
        size = 1000 + 17 * n + len(seed)
        sha, md5 = _h(seed + file), _h(seed + file, "md5")
        geo = fmt in {"geoparquet", "flatgeobuf", "pmtiles", "cog"}
        manifest_outputs.append({
            "name": name, "file": file, "format": fmt,
            "media_type": MEDIA_TYPES[fmt], "size": size, "sha256": sha, "md5": md5,
            "piece_size": 16777216, "pieces_sha1": _h(file, "sha1"), "rows": 13,
            "columns": [{"name": "pruid", "type": "int64", "nulls": 0},
                        {"name": "name_en", "type": "string", "nulls": 0}],
            "schema_fingerprint": _h("schema" + name), "logical_sha256": _h("rows" + seed + name),
            "geometry_types": ["Point"] if geo else [],
            "crs": crs if geo else None, "bbox": (bbox or [-135.05, 43.65, -52.71, 63.74]) if geo else None,
        })
        files.append({"role": "data", "name": name, "file": file, "size": size, "sha256": sha,
                      "md5": md5, "media_type": MEDIA_TYPES[fmt], "urls": urls(file)})
        tfile = file + ".torrent"
        files.append({"role": "torrent", "name": name, "file": tfile, "size": 400 + n,
                      "sha256": _h(tfile), "md5": _h(tfile, "md5"),
                      "media_type": "application/x-bittorrent", "urls": urls(tfile)})
        infohash = _h(tfile, "sha1")
        torrents.append({"file": file, "infohash": infohash, "piece_size": 16777216,
                         "magnet": f"magnet:?xt=urn:btih:{infohash}&dn={file}"})
    for role, file, media in (("manifest", f"{base}_manifest.json", "application/json"),
                              ("bundle", f"{base}_source.tar.gz", "application/gzip")):
        files.append({"role": role, "name": role, "file": file, "size": 2000 + len(file),
                      "sha256": _h(file), "md5": _h(file, "md5"), "media_type": media,
                      "urls": urls(file)})
    manifest = {
        "manifest_version": 1,
        "dataset": {"id": dataset_id, "version": version,
                    "recipe_path": f"datasets/{dataset_id}/recipe.yaml", "recipe_sha256": _h(seed)},
        "code": {"commit": None, "tree": None, "dirty": False},
        "environment": {"runner": "local", "network_isolation": "unshare",
                        "dockerfile": "docker/Dockerfile", "dockerfile_sha256": _h("df"),
                        "lock_sha256": _h("lock"), "image_id": None, "python": "3.11.7",
                        "packages": {"pyarrow": "26.0.1", "geopandas": "1.2.0"}},
        "params": {}, "source_date_epoch": 1767225600,
        "sources": [{"name": "src", "sha256": _h("src" + seed), "size": 975,
                     "url": "https://www150.statcan.gc.ca/src.csv", "path": None}],
        "outputs": manifest_outputs,
    }
    n = int(hashlib.sha256(seed.encode()).hexdigest()[:6], 16)
    record: dict[str, Any] = {
        "record_version": 1, "id": dataset_id, "version": version, "released_at": released_at,
        "manifest": manifest,
        "doi": f"10.5281/zenodo.{n}" if doi == "auto" else doi,
        "concept_doi": "10.5281/zenodo.1000" if doi else None,
        "github_release": f"https://github.com/dataforcanada/d4c/releases/tag/{dataset_id}/v{version}",
        "bundle_sha256": next(f["sha256"] for f in files if f["role"] == "bundle"),
        "files": files, "torrents": torrents,
        "sources": [{"name": "src", "sha256": _h("src" + seed), "size": 975,
                     "urls": {"s3": "https://s3.example.org/sources/x"}}],
    }
    if with_metadata:
        record["metadata"] = {
            "title": {"en": f"Dataset {dataset_id}", "fr": f"Jeu de données {dataset_id}"},
            "description": {"en": "Boundaries of Canada.", "fr": "Limites du Canada."},
            "license": "CC-BY-4.0",
            "creators": [{"name": "Data for Canada", "affiliation": "Data for Canada"}],
            "providers": [{"name": "Statistics Canada", "roles": ["producer", "licensor"],
                           "url": "https://www.statcan.gc.ca"},
                          {"name": "Data for Canada", "roles": ["processor", "host"],
                           "url": "https://dataforcanada.org"}],
            "keywords": ["boundaries", "canada"],
            "temporal": temporal or {"start": "2021-05-11", "end": "2021-05-11"},
            "spatial": {"bbox": [-141.0, 41.7, -52.6, 83.1]},
        }
    return record


def write_records(releases: Path, records: list[dict[str, Any]]) -> None:
    for record in records:
        path = releases / record["id"] / f"{record['version']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def five_records() -> list[dict[str, Any]]:
    """Two releases of one dataset plus three others, with varied assets and coverage."""
    return [
        make_record("ca_d4c_provinces-territories", "1.0.0", released_at="2026-01-05T10:00:00Z"),
        make_record("ca_d4c_provinces-territories", "1.1.0",
                    bbox=[-141.0, 41.7, -52.6, 83.1], released_at="2026-06-01T10:00:00Z"),
        make_record("ca_statcan_2021_population-density_provinces", "1.0.0",
                    outputs=(("table", "parquet"), ("table-csv", "csv")), doi=None,
                    targets=("local",)),
        make_record("ca-on_toronto_wards", "2.0.0", crs="EPSG:3347",
                    bbox=[7202000.0, 917000.0, 7250000.0, 950000.0],
                    temporal={"start": "2018-01-01", "end": "2022-12-31"}),
        make_record("ca_nrcan_elevation_cdem", "1.0.0", outputs=(("dem", "cog"),),
                    temporal={"start": "2011-01-01"}, targets=("s3", "zenodo")),
    ]
