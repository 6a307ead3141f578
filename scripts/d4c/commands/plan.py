"""`d4c plan --base REF [--head REF]`: the datasets a change touches, as JSON for a CI matrix.

`d4c plan --released all|ID|ID/VERSION`: the release records to verify, as a CI matrix.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from d4c import paths
from d4c.errors import D4CError, UsageError
from d4c.plan import dumps, plan, released


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", help="the ref the change starts from (e.g. origin/main)")
    parser.add_argument("--head", default="HEAD", help="the ref the change ends at (default: HEAD)")
    parser.add_argument(
        "--github-output", action="store_true",
        help="also append `json=<plan>` and per-key outputs to $GITHUB_OUTPUT (for workflows)",
    )
    parser.add_argument("--released", metavar="SELECTOR",
                        help="instead: list release records (all, ID or ID/VERSION) for verify")


def run(args: argparse.Namespace) -> int:
    if args.released is not None:
        data = released(paths.repo_root(), args.released)
    elif args.base:
        data = plan(paths.repo_root(), args.base, args.head).to_json()
    else:
        raise UsageError("d4c plan: --base REF (or --released SELECTOR) is required")
    text = dumps(data)
    print(text)
    if args.github_output:
        out = os.environ.get("GITHUB_OUTPUT")
        if not out:
            raise D4CError("--github-output given but GITHUB_OUTPUT is not set",
                           hint="only use --github-output inside GitHub Actions")
        with Path(out).open("a", encoding="utf-8") as fh:
            fh.write(f"json={text}\n")
            fh.write(f"any={'true' if data.get('datasets') or data.get('records') else 'false'}\n")
            fh.write(f"any_release={'true' if data.get('release') else 'false'}\n")
    return 0
