"""The static STAC tree, published beside the catalog after each release.

When the catalog is `{target, key}`, the tree (catalog.json, one folder per dataset with
its collection, items, README, AGENTS and thumbnail, and the d4c extension schema at
`extensions/d4c/v1.0.0/schema.json`) goes to `<folder of key>/stac/` on that target, so a
STAC browser or crawler reads it at `<the target's public URL>/.../stac/catalog.json`.
It is rebuilt from every record under releases/ (the same bytes a `d4c catalog build
--collections-dir` gives) and only files whose bytes changed are written. Unlike a
version's files these are mutable (an older version's item changes when a newer one
arrives: its links, its retain-latest copy), so they go through the target's state
writes (plain overwrites), as the journal does; the target must be local or s3.
The rebuild reads every record: fine for thousands of versions, to revisit at a million.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from d4c import paths
from d4c.catalog import build_catalog, load_records, metadata_from
from d4c.release.files import TREE_MEDIA_TYPES
from d4c.release.targets import StateStore


def tree_prefix(catalog_key: str) -> str:
    parent = PurePosixPath(catalog_key).parent.as_posix()
    return "stac" if parent in ("", ".") else f"{parent}/stac"


def publish(t: StateStore, catalog_key: str, root: Path, echo: Callable[[str], None]) -> str:
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
            data = path.read_bytes()
            if t.read_state(key) != data:
                t.write_state(key, data, TREE_MEDIA_TYPES.get(path.suffix, "application/octet-stream"))
                sent += 1
    url = t.public_url(f"{prefix}/catalog.json")  # type: ignore[attr-defined]
    echo(f"stac tree {url} ({sent} file(s) changed)")
    return url
