"""The local side of a release: the build folder, the small release files, raw sources."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from d4c import paths
from d4c.digest import digest_file, sha256_file
from d4c.errors import D4CError
from d4c.recipe import Recipe
from d4c.release.targets.base import ReleaseFile
from d4c.release.targets.local import atomic_write


def build_dir_for(root: Path, rcp: Recipe) -> Path:
    """Where `d4c build` puts a version by default: .d4c/build/<id>/v<version>/."""
    return paths.state_dir(root) / "build" / rcp.id / f"v{rcp.version}"


def digest_small(role: str, name: str, path: Path, raw: bytes | None, media_type: str) -> ReleaseFile:
    """Write `raw` to `path` (when given) and describe the file for upload and the record."""
    if raw is not None and (not path.is_file() or path.read_bytes() != raw):
        atomic_write(path, data=raw)
    d = digest_file(path)  # one read for both hashes (d4c.digest)
    return ReleaseFile(role=role, name=name, file=path.name, path=path, size=d.size,
                       sha256=d.sha256, md5=d.md5, media_type=media_type)


def ensure_built(rcp: Recipe, root: Path, build_dir: Path,
                 echo: Callable[[str], None]) -> tuple[bytes, dict[str, Any]]:
    """The build's manifest (building first when there is none), checked against its files."""
    mpath = build_dir / "manifest.json"
    if not mpath.is_file():
        echo(f"no build at {build_dir}: building {rcp.id} v{rcp.version} first")
        from d4c.build.pipeline import BuildOptions, build

        build(rcp, root, build_dir, BuildOptions())
    raw = mpath.read_bytes()
    try:
        manifest = json.loads(raw)
        ds = manifest["dataset"]
        outputs = manifest["outputs"]
    except (ValueError, KeyError, TypeError):
        raise D4CError(f"{mpath} is not a d4c manifest", hint=f"run `d4c build {rcp.id}`") from None
    if (ds.get("id"), ds.get("version")) != (rcp.id, rcp.version):
        raise D4CError(f"{mpath} is for {ds.get('id')} v{ds.get('version')}, the recipe says "
                       f"{rcp.id} v{rcp.version}", hint=f"run `d4c build {rcp.id}` again")
    if not outputs:
        raise D4CError(f"{mpath} lists no outputs", hint=f"run `d4c build {rcp.id}` again")
    for out in outputs:
        path = build_dir / out["file"]
        # A release publishes exactly the bytes the manifest describes: read them once to check.
        if not path.is_file() or path.stat().st_size != out["size"] or sha256_file(path) != out["sha256"]:
            raise D4CError(f"{path} is missing or does not match the manifest's sha256",
                           hint=f"run `d4c build {rcp.id}` again")
    return raw, dict(manifest)


def source_file(rcp: Recipe, source: dict[str, Any]) -> Path:
    """The verified local bytes of a raw source (the fetch cache, fetching if needed)."""
    from d4c import fetch

    sha = str(source["sha256"])
    cached = fetch.cache_path(sha)
    if not cached.is_file():
        fetch.fetch_sources(rcp, progress=False)
    if cached.is_file():
        return cached
    if source.get("path"):
        kept = rcp.folder / str(source["path"])
        if kept.is_file() and sha256_file(kept) == sha:
            return kept
    raise D4CError(f"{rcp.id}: source {source.get('name')!r} ({sha[:12]}...) is not available locally",
                   hint=f"run `d4c fetch {rcp.id}`")
