"""`d4c release ID [--targets FILE] [--dry-run [--format json]]`: publish a built version to
every target, once its plan (credentials, reachability, what is there) is known to be possible."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from d4c import ci
from d4c.release.orchestrate import release


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="dataset id (datasets/<id>/recipe.yaml)")
    parser.add_argument("--targets", type=Path, default=None, metavar="FILE",
                        help="targets config (YAML; default: $D4C_TARGETS, else one local "
                             "target in .d4c/publish)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (every action, what is already there, what stops "
                             "it) after read-only checks of every target, and write nothing")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="how --dry-run prints the plan (default: text)")


def summary(rec: dict[str, Any]) -> str:
    """Markdown for the CI step summary: what went where."""
    lines = [f"### Released {rec['id']} v{rec['version']}", ""]
    if rec.get("doi"):
        lines.append(f"DOI: [{rec['doi']}](https://doi.org/{rec['doi']})  ")
    if rec.get("github_release"):
        lines.append(f"GitHub release: {rec['github_release']}  ")
    lines += ["", "| file | sha256 | mirrors |", "|---|---|---|"]
    for f in rec["files"]:
        links = " ".join(f"[{name}]({url})" for name, url in sorted(f["urls"].items()))
        lines.append(f"| {f['file']} | `{f['sha256'][:16]}...` | {links} |")
    lines += [""] + [f"Torrent `{t['infohash']}`: {t['magnet'].split('&')[0]}" for t in rec["torrents"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    targets = args.targets or (Path(os.environ["D4C_TARGETS"]) if os.environ.get("D4C_TARGETS") else None)
    rec = release(args.id, targets_file=targets, dry_run=args.dry_run, fmt=args.format)
    if rec is not None:
        ci.summary(summary(rec))  # redacted there
    return 0
