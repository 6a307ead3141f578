"""Read release records (releases/<id>/<version>.json) and the descriptive metadata behind them.

A record carries the manifest, URLs, DOIs and hashes. The descriptive fields (titles,
license, providers, keywords, coverage) come from the record's optional `metadata`
object (a snapshot of the recipe at release time); for records without it, from the
recipe at the commit the manifest names (`git show`), else from the recipe file.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from d4c import model
from d4c.errors import D4CError

Record = dict[str, Any]

DESCRIPTIVE = model.DESCRIPTIVE
_REQUIRED = ("id", "version", "released_at", "manifest", "files")


def check_record(record: Any, where: str) -> Record:
    """Fail with one line when a record lacks what the catalog needs; the shape is the
    model's (d4c.model), without the JSON Schema pass that `d4c release` made when it wrote
    the record (2 ms a record: a catalog of 100k versions would spend minutes on it)."""
    if not isinstance(record, dict):
        raise D4CError("a release record must be a JSON object", where=where)
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise D4CError(
            f"release record lacks {', '.join(missing)}",
            where=where,
            hint="records are written by `d4c release`; see docs/architecture.md",
        )
    model.ReleaseRecord.check(record, where=where)
    return record


def dataset_folders(releases: Path) -> list[str]:
    """The dataset folders under `releases/`, in the catalog's order (dataset ids sorted as
    strings). Sorted by name, not by path: `ca_x-a/` sorts before `ca_x/` as a path but
    after `ca_x` as an id."""
    if not releases.is_dir():
        raise D4CError(f"no releases folder at {releases}", hint="pass --releases DIR")
    with os.scandir(releases) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def read_dataset(releases: Path, name: str) -> list[Record]:
    """One dataset folder's records (releases/<id>/*.json), by file name."""
    folder = os.path.join(releases, name)  # strings, not Paths: 10k records spend 0.3 s in pathlib
    with os.scandir(folder) as entries:
        files = sorted(e.name for e in entries if e.name.endswith(".json") and e.is_file())
    return [_read_record(os.path.join(folder, f), name, f) for f in files]


def iter_datasets(releases: Path, folders: list[str] | None = None) -> Iterator[list[Record]]:
    """Each dataset's records, one dataset at a time, in the catalog's order (of `folders`,
    default every one): memory holds one dataset's records. Empty folders are skipped."""
    for name in dataset_folders(releases) if folders is None else folders:
        group = read_dataset(releases, name)
        if group:
            yield group


def _read_record(path: str, folder: str, file: str) -> Record:
    record = check_record(model.read_json(path, "release record"), path)
    stem = file[:-len(".json")] if file != ".json" else file  # Path.stem: a bare ".json" is all stem
    if folder != record["id"] or stem != record["version"]:
        raise D4CError(
            f"record says {record['id']} {record['version']} but sits at {path}",
            where=str(path),
            hint="records live at releases/<id>/<version>.json",
        )
    return record


def load_records(releases: Path) -> list[Record]:
    """Every record under `releases/`, in dataset order (small catalogs, tests; the CLI
    streams `iter_datasets`)."""
    return [record for group in iter_datasets(releases) for record in group]


def _recipe_text(record: Record, root: Path) -> str | None:
    dataset = record["manifest"].get("dataset") or {}
    rel = dataset.get("recipe_path") or f"datasets/{record['id']}/recipe.yaml"
    commit = (record["manifest"].get("code") or {}).get("commit")
    if commit and (root / ".git").exists():
        done = subprocess.run(
            ["git", "-C", str(root), "show", f"{commit}:{rel}"],
            capture_output=True, text=True, check=False,
        )
        if done.returncode == 0:
            return done.stdout
    path = root / rel
    return path.read_text(encoding="utf-8") if path.is_file() else None


def descriptive_metadata(record: Record, root: Path | None) -> dict[str, Any]:
    """Titles, license, providers... for one record (see the module docstring for the order)."""
    meta = record.get("metadata")
    if isinstance(meta, dict):
        return meta
    text = _recipe_text(record, root) if root is not None else None
    if text is None:
        raise D4CError(
            f"release {record['id']} {record['version']} has no `metadata` and its recipe "
            "cannot be found",
            hint="add the recipe's descriptive fields as `metadata` to the record, "
            "or run inside the repository",
        )
    from ruamel.yaml import YAML  # only for records without `metadata`: a build of
    from ruamel.yaml.error import YAMLError  # records that carry it does not import YAML

    from d4c.recipe import plain

    try:
        recipe = YAML(typ="safe", pure=True).load(text)
    except YAMLError:
        raise D4CError(f"recipe of {record['id']} is not valid YAML", hint="run `d4c validate`") from None
    return {k: plain(recipe[k]) for k in DESCRIPTIVE if isinstance(recipe, dict) and k in recipe}

