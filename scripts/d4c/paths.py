"""Where things live: the repository root, dataset folders, the source cache."""
from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

from d4c.errors import D4CError


def repo_root(start: Path | None = None) -> Path:
    """The nearest folder above `start` (default: cwd) holding `datasets/` or `.git`.

    `D4C_REPO` overrides the search, for tests and for unpacked source bundles.
    """
    env = os.environ.get("D4C_REPO")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if (cand / "datasets").is_dir() or (cand / ".git").exists():
            return cand
    raise D4CError(
        f"no d4c repository found at or above {here}",
        hint="run inside a checkout (a folder with datasets/) or set D4C_REPO",
    )


def dataset_dir(dataset_id: str, root: Path | None = None) -> Path:
    """The folder of one dataset: datasets/<id>/."""
    return (root or repo_root()) / "datasets" / dataset_id


def recipe_path(dataset_id: str, root: Path | None = None) -> Path:
    """The recipe file of one dataset."""
    return dataset_dir(dataset_id, root) / "recipe.yaml"


def releases_dir(root: Path | None = None) -> Path:
    """releases/: one JSON record per published version."""
    return (root or repo_root()) / "releases"


def cache_dir() -> Path:
    """The content-addressed source cache (D4C_CACHE overrides the user cache dir)."""
    env = os.environ.get("D4C_CACHE")
    return Path(env) if env else Path(user_cache_dir("d4c")) / "sources"


def state_dir(root: Path | None = None) -> Path:
    """.d4c/: local working state (default local target, build outputs of the demo)."""
    return (root or repo_root()) / ".d4c"
