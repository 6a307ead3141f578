"""The build manifest: what was built, from what, how; validated and byte-stable.

Shape: docs/architecture.md ("Manifest"); schema: schemas/manifest.schema.json.
Written with sorted keys, 2-space indent and a trailing newline, so the manifest
of a reproducible build is itself reproducible.
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa

from d4c import model, schemas
from d4c.atomic import atomic_write
from d4c.build.logical import describe
from d4c.build.runners import RunResult, environment_file
from d4c.canonical import dumps
from d4c.digest import digest_file
from d4c.errors import D4CError
from d4c.recipe import Output, Recipe

MANIFEST_VERSION = 1
PIECE_SIZE = 16 * 2**20
MEDIA_TYPES = {
    "geoparquet": "application/vnd.apache.parquet",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "cog": "image/tiff; application=geotiff; profile=cloud-optimized",
    "pmtiles": "application/vnd.pmtiles",
    "flatgeobuf": "application/vnd.flatgeobuf",
    "gpkg": "application/geopackage+sqlite3",
}


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _git(root: Path, *args: str) -> str | None:
    # --no-optional-locks: never take index.lock (others may be committing in the same tree).
    proc = subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def code_state(root: Path, recipe: Recipe) -> dict[str, Any]:
    """Commit and tree of the checkout; dirty if anything the build depends on is uncommitted."""
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "tree": None, "dirty": True}
    deps = [str(recipe.folder.relative_to(root)), "scripts", "docker", "schemas",
            "requirements.lock", "pyproject.toml"]
    status = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *deps)
    return {"commit": commit, "tree": _git(root, "rev-parse", "HEAD^{tree}"), "dirty": bool(status)}


def output_entry(recipe: Recipe, output: Output, folder: Path) -> dict[str, Any]:
    """Digests (one read: size, sha256, md5, torrent pieces) and the logical facts of one artifact."""
    path = folder / recipe.artifact_name(output)
    d = digest_file(path, PIECE_SIZE)
    entry: dict[str, Any] = {
        "name": output.name, "file": path.name, "format": output.format,
        "media_type": MEDIA_TYPES[output.format], "size": d.size, "sha256": d.sha256,
        "md5": d.md5, "piece_size": d.piece_size, "pieces_sha1": d.pieces.hex(),
        "rows": None, "columns": [], "schema_fingerprint": None, "logical_sha256": None,
        "geometry_types": [], "crs": None, "bbox": None,
    }
    try:
        entry.update(describe(path, output.format))  # `accept` made it a plain file of ours first
    except (OSError, ValueError, pa.ArrowException) as exc:  # the transform's bytes, not our bug
        raise D4CError(f"output {path.name} is not a readable {output.format} file ({str(exc)[:200]})",
                       where=recipe.folder.name, hint=f"write it with ctx.write_{output.format} or check the "
                       "format declared in recipe.yaml") from None
    return entry


def make(
    recipe: Recipe, root: Path, folder: Path, run: RunResult, params: dict[str, Any],
    source_date_epoch: int, sample: bool, code: dict[str, Any], sampled: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    env_file = environment_file(recipe)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "dataset": {"id": recipe.id, "version": recipe.version,
                    "recipe_path": recipe.path.relative_to(root).as_posix(),
                    "recipe_sha256": recipe.sha256, "files": dict(sorted(run.files.items()))},
        "code": code,
        "environment": {
            "runner": run.runner, "sandbox": run.sandbox, "network_isolation": run.network_isolation,
            "dockerfile": env_file, "dockerfile_sha256": _sha256(root / env_file),
            "lock_sha256": _sha256(root / "requirements.lock"), "image_id": run.image_id,
            "python": run.python, "packages": dict(sorted(run.packages.items())),
            "tools": dict(sorted(run.tools.items())),
        },
        "params": params,
        "sample": sample,
        "source_date_epoch": source_date_epoch,
        "sources": [{"name": s.name, "sha256": s.sha256, "size": s.size, "url": s.url, "path": s.path}
                    for s in recipe.sources],
        "outputs": [output_entry(recipe, o, folder) for o in recipe.outputs],
    }
    if sample:  # what a sample build read of each sampled source (d4c.sample), hashes and all
        manifest["sample_sources"] = sampled or []
    validate(manifest)
    return manifest


def validate(manifest: dict[str, Any], where: str = "manifest") -> None:
    """One clear line when `manifest` breaks the manifest schema (d4c.schemas)."""
    schemas.check("manifest", manifest, what=where)


def write(path: Path, doc: dict[str, Any]) -> None:
    """Write the canonical JSON (d4c.canonical) atomically (d4c.atomic)."""
    atomic_write(path, data=dumps(doc))


def load(path: Path) -> dict[str, Any]:
    """The manifest at `path`, checked against its schema (d4c.model parses it)."""
    return model.load_manifest(path).doc
