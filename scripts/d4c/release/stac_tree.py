"""The static STAC tree, published beside the catalog after each release.

When the catalog is `{target, key}`, the tree (catalog.json, one folder per dataset with
its collection, items, README, AGENTS and thumbnail, and the d4c extension schema at
`extensions/d4c/v1.0.0/schema.json`) goes to `<folder of key>/stac/` on that target, so a
STAC browser or crawler reads it at `<the target's public URL>/.../stac/catalog.json`.
It is rebuilt from every record under releases/ (the same bytes a `d4c catalog build
--collections-dir` gives) and only files whose bytes changed are uploaded: an item of an
older version changes when a newer one arrives (its links and its retain-latest copy).
The rebuild reads every record: fine for thousands of versions, to revisit at a million.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from d4c import paths
from d4c.catalog import build_catalog, load_records, metadata_from
from d4c.digest import digest_file
from d4c.release.targets import Target


def tree_prefix(catalog_key: str) -> str:
    parent = PurePosixPath(catalog_key).parent.as_posix()
    return "stac" if parent in ("", ".") else f"{parent}/stac"


def publish(t: Target, catalog_key: str, root: Path, echo: Callable[[str], None]) -> str:
    """Build the tree from releases/ and upload what changed; return its catalog.json URL."""
    releases = paths.releases_dir(root)
    prefix = tree_prefix(catalog_key)
    with tempfile.TemporaryDirectory(prefix="d4c-stac-") as tmp:
        out = Path(tmp) / "stac"
        build_catalog(load_records(releases), Path(tmp) / "catalog.parquet",
                      metadata=metadata_from(root), collections_dir=out)
        sent = 0
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(out).as_posix()}"
            d = digest_file(path)
            if not t.exists(key, d.sha256):
                t.upload(key, path, d.sha256, d.md5)
                sent += 1
    url = t.public_url(f"{prefix}/catalog.json")
    echo(f"stac tree {url} ({sent} file(s) changed)")
    return url
