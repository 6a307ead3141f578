"""The source bundle: a deterministic .tar.gz of everything needed to rebuild a release.

Holds the dataset's recipe folder, scripts/ (the JSON Schemas are in scripts/d4c/schemas/),
docker/, pyproject.toml, the lock files, the Makefile and the manifest, plus a README.md on
how to rebuild and mirrors.json (where the sources and files are: d4c.copies), under one
top folder `<id>_v<version>_source/`. With them the bundle is enough: `d4c verify BUNDLE`
(also `--runner container`, whose image build reads README.md) works outside any checkout. Same inputs, same bytes: entries sorted, mtime =
the manifest's source_date_epoch, uid/gid 0, no user/group names, modes 0644/0755,
gzip header with no file name and mtime 0.
"""
from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from d4c.atomic import atomic_write
from d4c.errors import D4CError

TREES = ("scripts", "docker")  # schemas/ is a symlink into scripts/d4c/schemas/
TOP_FILES = ("pyproject.toml", "Makefile")
SKIP_PARTS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
MAX_MEMBER = 2 << 30  # extraction cap per file; a bundle holds code, not data
MAX_TOTAL = 8 << 30


def _listed(root: Path) -> list[str] | None:
    """Files git would track (tracked + untracked, not ignored), or None outside a git repo."""
    if not (root / ".git").exists():
        return None
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, capture_output=True, check=False)
    if out.returncode != 0:
        return None
    return [p for p in out.stdout.decode().split("\0") if p]


def _wanted(rel: str, recipe_dir: str) -> bool:
    parts = rel.split("/")
    if SKIP_PARTS.intersection(parts) or rel.endswith(".pyc") or any(
            p.endswith(".egg-info") for p in parts):
        return False
    if parts[0] in TREES or rel.startswith(recipe_dir + "/"):
        return True
    return len(parts) == 1 and (rel in TOP_FILES or (
        rel.startswith("requirements") and rel.endswith((".lock", ".in"))))


def bundle_files(root: Path, recipe_dir: Path) -> list[str]:
    """Repo-relative paths of the files that go into the bundle, sorted."""
    rdir = recipe_dir.resolve().relative_to(root.resolve()).as_posix()
    listed = _listed(root)
    if listed is None:  # an unpacked bundle or a plain copy: walk it
        listed = [p.relative_to(root).as_posix() for p in root.rglob("*")]
    return sorted(r for r in set(listed) if _wanted(r, rdir) and (root / r).is_file()
                  and not (root / r).is_symlink())


def _info(name: str, size: int, mode: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def make_bundle(root: Path, recipe_dir: Path, manifest_bytes: bytes, dest: Path,
                top: str, mtime: int, extra: Mapping[str, bytes] | None = None) -> list[str]:
    """Write the bundle to `dest` atomically; return the member names."""
    raw, names = bundle_bytes(root, recipe_dir, manifest_bytes, top, mtime, extra=extra)
    atomic_write(dest, data=raw, durable=False)  # staging: the targets hold the published copies
    return names


def bundle_bytes(root: Path, recipe_dir: Path, manifest_bytes: bytes, top: str,
                 mtime: int, extra: Mapping[str, bytes] | None = None) -> tuple[bytes, list[str]]:
    """The bundle's bytes and member names, made in memory (a plan digests it, writing nothing).
    `extra` adds generated top-level files (README.md, mirrors.json) over any repo file."""
    made = {"manifest.json": manifest_bytes, **(extra or {})}
    names = []
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=6, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries: list[tuple[str, Path | None]] = [
            (rel, root / rel) for rel in bundle_files(root, recipe_dir) if rel not in made]
        entries += [(rel, None) for rel in made]
        for rel, path in sorted(entries, key=lambda e: e[0]):
            name = f"{top}/{rel}"
            if path is None:
                tar.addfile(_info(name, len(made[rel]), 0o644, mtime), io.BytesIO(made[rel]))
            else:
                mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as fh:
                    tar.addfile(_info(name, path.stat().st_size, mode, mtime), fh)
            names.append(name)
    return buf.getvalue(), names


def extract_bundle(path: Path, dest: Path) -> Path:
    """Safely unpack a bundle into `dest`; return its top folder (which holds manifest.json).

    Refuses links, devices, absolute or `..` paths, and members over the size caps.
    """
    dest.mkdir(parents=True, exist_ok=True)
    total = 0
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            for m in members:
                if not (m.isfile() or m.isdir()):
                    raise D4CError(f"{path}: member {m.name!r} is not a regular file",
                                   hint="a d4c bundle holds only files; is this the right file?")
                if m.name.startswith("/") or ".." in m.name.split("/"):
                    raise D4CError(f"{path}: unsafe member path {m.name!r}")
                total += m.size
                if m.size > MAX_MEMBER or total > MAX_TOTAL:
                    raise D4CError(f"{path}: member {m.name!r} exceeds the size cap")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise D4CError(f"cannot unpack bundle {path}: {exc}",
                       hint="download it again and check its sha256") from None
    top = dest / tops.pop() if len(tops) == 1 else None
    if top is None or not (top / "manifest.json").is_file():
        raise D4CError(f"{path}: not a d4c source bundle (no single top folder with manifest.json)")
    return top


def bundle_readme(dataset_id: str, version: str, mirrors: Mapping[str, Any]) -> str:
    """How to rebuild this version from this bundle, and where its sources are."""
    lines = [
        f"# {dataset_id} v{version}: source bundle", "",
        "Everything needed to rebuild this version of the dataset byte for byte: the recipe",
        "and transform (`datasets/`), the build code (`scripts/d4c`), the pinned environment",
        "(`requirements.lock`, `docker/`) and the build manifest (`manifest.json`), which holds",
        "the sha256 of every raw source and every artifact.", "",
        "## Rebuild and compare", "",
        "With d4c installed (`python3 -m venv .venv && .venv/bin/pip install --require-hashes",
        "--no-deps -r requirements.lock && .venv/bin/pip install --no-deps -e .` in this folder):", "",
        "```",
        f"d4c verify {dataset_id}_v{version}_source.tar.gz                     # bubblewrap sandbox",
        f"d4c verify {dataset_id}_v{version}_source.tar.gz --runner container  # podman image from docker/",
        f"d4c verify {dataset_id}_v{version}_source.tar.gz --mirror NAME       # one mirror's copies only",
        "```", "",
        "verify unpacks the bundle, fetches each source by sha256 from the mirrors below (then",
        "from the recipe's URL), rebuilds in the sandbox and prints `identical` or `DIFFERENT`",
        "per artifact. The mirrors are also in `mirrors.json`; the release record",
        f"(`releases/{dataset_id}/{version}.json` in the repository) lists every copy, including",
        "the ones a service (Zenodo) assigned after this bundle was made.", "",
        "## Sources", "",
    ]
    for s in mirrors.get("sources") or []:
        lines.append(f"- `{s['name']}` sha256 `{s['sha256']}` ({s.get('size')} bytes)")
        lines += [f"  - {name}: {url}" for name, url in sorted((s.get("urls") or {}).items())]
        if s.get("recipe_url"):
            lines.append(f"  - origin: {s['recipe_url']}")
    lines += ["", "## Released files", ""]
    for file, urls in sorted((mirrors.get("files") or {}).items()):
        lines.append(f"- `{file}`")
        lines += [f"  - {name}: {url}" for name, url in sorted(urls.items())]
    return "\n".join(lines) + "\n"
