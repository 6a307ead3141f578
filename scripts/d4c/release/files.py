"""The local side of a release: the build folder, the small release files, raw sources."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from d4c import model, paths
from d4c.atomic import atomic_write
from d4c.digest import digest_file, sha256_file
from d4c.errors import D4CError
from d4c.recipe import Recipe
from d4c.release.targets.base import ReleaseFile

# The media types of the files a release adds to the build's outputs (whose types the
# manifest holds, from d4c.build.manifest.MEDIA_TYPES); the record keeps both, the catalog reads it.
ROLE_MEDIA_TYPES = {"manifest": "application/json", "provenance": "application/vnd.in-toto+json",
                    "bundle": "application/gzip", "torrent": "application/x-bittorrent"}
# The static STAC tree's files, by suffix (d4c.release.stac_tree).
TREE_MEDIA_TYPES = {".json": "application/json", ".md": "text/markdown; charset=utf-8",
                    ".png": "image/png"}


def build_dir_for(root: Path, rcp: Recipe) -> Path:
    """Where `d4c build` puts a version by default: .d4c/build/<id>/v<version>/."""
    return paths.state_dir(root) / "build" / rcp.id / f"v{rcp.version}"


def describe_bytes(role: str, path: Path, raw: bytes) -> ReleaseFile:
    """Describe a small release file from its bytes, before it is written (the plan writes nothing)."""
    return ReleaseFile(role=role, name=role, file=path.name, path=path, size=len(raw),
                       sha256=hashlib.sha256(raw).hexdigest(), md5=hashlib.md5(raw).hexdigest(),
                       media_type=ROLE_MEDIA_TYPES[role])


def digest_small(role: str, name: str, path: Path, raw: bytes | None, media_type: str) -> ReleaseFile:
    """Write `raw` to `path` (when given) and describe the file for upload and the record."""
    if raw is not None and (not path.is_file() or path.read_bytes() != raw):
        atomic_write(path, data=raw, durable=False)  # staging: a rerun writes it again
    d = digest_file(path)  # one read for both hashes (d4c.digest)
    return ReleaseFile(role=role, name=name, file=path.name, path=path, size=d.size,
                       sha256=d.sha256, md5=d.md5, media_type=media_type)


def read_build(rcp: Recipe, build_dir: Path) -> tuple[bytes, dict[str, Any]]:
    """The build's manifest, checked against its files. Never builds: a release holds every
    credential, so a transform (untrusted code) must have run elsewhere, in a sandbox."""
    mpath = build_dir / "manifest.json"
    if not mpath.is_file():
        raise D4CError(f"no build of {rcp.id} v{rcp.version} at {build_dir}",
                       hint=f"run `d4c build {rcp.id} --check` (in a shell or CI job without "
                            "release credentials), then release")
    raw = mpath.read_bytes()
    typed = model.Manifest.from_doc(model.parse_json(raw, mpath, "manifest"), where=str(mpath))
    manifest, outputs = typed.doc, typed.doc["outputs"]
    if (typed.dataset_id, typed.version) != (rcp.id, rcp.version):
        raise D4CError(f"{mpath} is for {typed.dataset_id} v{typed.version}, the recipe says "
                       f"{rcp.id} v{rcp.version}", hint=f"run `d4c build {rcp.id}` again")
    if not outputs:
        raise D4CError(f"{mpath} lists no outputs", hint=f"run `d4c build {rcp.id}` again")
    if typed.doc.get("sample"):
        raise D4CError(f"{mpath} is a sample build (--sample: sample params or sample sources); release "
                       "refuses it", hint=f"build the full data with `d4c build {rcp.id} --check`, then release")
    if typed.sandbox == "none":
        raise D4CError(f"{mpath} was built without a sandbox (--no-sandbox); release refuses it",
                       hint=f"rebuild with `d4c build {rcp.id} --check`")
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
