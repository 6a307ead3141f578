"""A version with a release record is immutable: is this build the recorded one?

A build of a released version with other bytes is a problem of the plan, before anything
(it was 'already released' on one config and eight conflicting keys on another, and the dry
run planned uploads).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from d4c import model
from d4c.errors import D4CError


def against_record(dataset: str, version: str, build_dir: Path, manifest: dict[str, Any],
                   record_path: Path, root: Path) -> tuple[bool, D4CError | None]:
    """(released, problem): whether the version has a record, and the line when the build's
    outputs are not the record's (or the record does not read)."""
    if not record_path.is_file() or not manifest:
        return False, None
    try:
        rec = model.load_record(record_path, checked=False)
    except D4CError as exc:
        return False, exc
    ours = {str(o["file"]): str(o["sha256"]) for o in manifest.get("outputs") or []}
    theirs = {str(o.get("file")): str(o.get("sha256")) for o in rec.doc["manifest"].get("outputs") or []}
    if ours == theirs:
        return True, None
    name = next((f for f in sorted(ours.keys() | theirs.keys()) if ours.get(f) != theirs.get(f)), "")
    return True, D4CError(
        f"{dataset} v{version} is already released with other bytes: {name} is "
        f"{(ours.get(name) or 'absent')[:12]} in {build_dir}, {(theirs.get(name) or 'absent')[:12]} "
        f"in {record_path.relative_to(root)}",
        hint="a released version is immutable: set a new version (`d4c diff` says which bump)")
