"""`d4c plan --base REF [--head REF]`: the datasets a change touches, as JSON for a CI matrix."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from d4c import paths
from d4c.errors import D4CError
from d4c.plan import dumps, plan


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="the ref the change starts from (e.g. origin/main)")
    parser.add_argument("--head", default="HEAD", help="the ref the change ends at (default: HEAD)")
    parser.add_argument(
        "--github-output", action="store_true",
        help="also append `json=<plan>` and per-key outputs to $GITHUB_OUTPUT (for workflows)",
    )


def run(args: argparse.Namespace) -> int:
    result = plan(paths.repo_root(), args.base, args.head)
    text = dumps(result)
    print(text)
    if args.github_output:
        out = os.environ.get("GITHUB_OUTPUT")
        if not out:
            raise D4CError("--github-output given but GITHUB_OUTPUT is not set",
                           hint="only use --github-output inside GitHub Actions")
        data = result.to_json()
        with Path(out).open("a", encoding="utf-8") as fh:
            fh.write(f"json={text}\n")
            fh.write(f"any={'true' if data['datasets'] else 'false'}\n")
            fh.write(f"any_release={'true' if data['release'] else 'false'}\n")
    return 0
