"""`d4c fetch ID [--sources auto|mirrors] [--mirror URL ...] [--jobs N]`.

Fills the source cache for one dataset and prints `name<TAB>sha256<TAB>path` per
source, so a script (or a person) can see exactly which verified bytes a build uses.
"""
from __future__ import annotations

import argparse

from d4c import fetch
from d4c import recipe as recipe_mod
from d4c.fetch import MODES, fetch_sources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="ID", help="dataset id (folder under datasets/)")
    parser.add_argument(
        "--sources", choices=MODES, default="auto",
        help="auto: cache, mirrors, then recipe URLs; mirrors: never the recipe URLs",
    )
    parser.add_argument(
        "--mirror", action="append", default=[], metavar="URL",
        help="a source mirror base URL or folder (repeatable; D4C_MIRRORS adds more)",
    )
    parser.add_argument("--jobs", type=int, default=fetch.DEFAULT_JOBS,
                        help=f"parallel downloads (default {fetch.DEFAULT_JOBS})")


def run(args: argparse.Namespace) -> int:
    rec = recipe_mod.load_id(args.dataset)
    found = fetch_sources(rec, mirrors=args.mirror, mode=args.sources, jobs=args.jobs)
    by_name = {s.name: s for s in rec.sources}
    for name, path in found.items():
        print(f"{name}\t{by_name[name].sha256}\t{path}")
    return 0
