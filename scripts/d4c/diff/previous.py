"""The previous version to diff against: its release record and, when reachable, its files.

The record lists each artifact's URLs per target: a local target's path (plain or
`file://`) or an http(s) URL. Every fetched byte is checked against the record's
sha256; a file that cannot be fetched intact is simply missing, and the diff then
falls back to what the record's manifest says.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from d4c import fetch, model, paths, semver
from d4c.errors import D4CError

log = logging.getLogger(__name__)


def _records(root: Path, dataset_id: str) -> dict[str, Path]:
    folder = paths.releases_dir(root) / dataset_id
    found: dict[str, Path] = {}
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if semver.is_valid(p.stem):
            found[p.stem] = p
    return found


def find_record(root: Path, dataset_id: str, new_version: str, against: str | None) -> dict[str, Any] | None:
    """The record of `against`, else of the newest release not above `new_version`
    (so a backported fix on an older line diffs against its own line), else the newest."""
    records = _records(root, dataset_id)
    if against is not None:
        if against not in records:
            have = ", ".join(sorted(records, key=semver.key)) or "none"
            raise D4CError(f"no release record releases/{dataset_id}/{against}.json",
                           hint=f"released versions: {have}")
        path = records[against]
    else:
        if not records:
            return None
        ordered = sorted(records, key=semver.key)
        below = [v for v in ordered if semver.key(v) <= semver.key(new_version)]
        path = records[(below or ordered)[-1]]
    return model.load_record(path).doc


def fetch_artifacts(record: dict[str, Any], root: Path, workdir: Path) -> dict[str, Path]:
    """Output name -> verified local copy, for every data file that could be fetched."""
    got: dict[str, Path] = {}
    for f in record.get("files") or []:
        if f.get("role") != "data":
            continue
        urls = f.get("urls") or {}
        # local copies first: cheaper and independent of the network
        ordered = sorted(urls.values(), key=lambda u: (fetch.local_path(u, root) is None, u))
        dest = workdir / Path(str(f["file"])).name
        for url in ordered:
            if fetch.get_verified(url, dest, str(f["sha256"]), root=root):
                got[str(f["name"])] = dest
                break
    return got


def cleanup(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)
