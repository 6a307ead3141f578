"""`d4c release ID [--targets FILE] [--dry-run]`: publish a built version to every target."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from d4c.release.orchestrate import release


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="dataset id (datasets/<id>/recipe.yaml)")
    parser.add_argument("--targets", type=Path, default=None, metavar="FILE",
                        help="targets config (YAML; default: $D4C_TARGETS, else one local "
                             "target in .d4c/publish)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be published where, and touch nothing")


def run(args: argparse.Namespace) -> int:
    targets = args.targets or (Path(os.environ["D4C_TARGETS"]) if os.environ.get("D4C_TARGETS") else None)
    release(args.id, targets_file=targets, dry_run=args.dry_run)
    return 0
