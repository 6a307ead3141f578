"""`d4c plan --base REF [--head REF]`: the datasets a change touches, as JSON for a CI matrix.

`d4c plan --released all|ID|ID/VERSION`: the release records to verify, as a CI matrix.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ruamel.yaml import YAML

from d4c import argo, paths
from d4c.errors import D4CError, UsageError
from d4c.plan import commit_of, dumps, plan, released


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", help="the ref the change starts from (e.g. origin/main)")
    parser.add_argument("--head", default="HEAD", help="the ref the change ends at (default: HEAD)")
    parser.add_argument(
        "--github-output", action="store_true",
        help="also append `json=<plan>` and per-key outputs to $GITHUB_OUTPUT (for workflows)",
    )
    parser.add_argument("--released", metavar="SELECTOR",
                        help="instead: list release records (all, ID or ID/VERSION) for verify")
    parser.add_argument("--format", choices=["json", "argo"], default="json",
                        help="json (default), or argo: an Argo Workflows manifest (YAML) of the release jobs")
    parser.add_argument("--argo-repo", default="", help="--format argo: the git URL the pods clone")
    parser.add_argument("--argo-image", default="", help="--format argo: the d4c image the pods run")


def run(args: argparse.Namespace) -> int:
    if args.released is not None:
        data = released(paths.repo_root(), args.released)
    elif args.base:
        data = plan(paths.repo_root(), args.base, args.head).to_json()
    else:
        raise UsageError("d4c plan: --base REF (or --released SELECTOR) is required")
    if args.format == "argo":
        if args.released is not None or args.github_output:
            raise UsageError("--format argo takes --base/--head only")
        yaml = YAML()  # block style, keys in the order written: same plan, same bytes
        yaml.default_flow_style = False
        yaml.dump(argo.workflow(data, args.argo_repo, commit_of(paths.repo_root(), args.head), args.argo_image),
                 sys.stdout)
        return 0
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
            for prefix, key in (("", "jobs"), ("release_", "release_jobs")):  # guards: a matrix may not be empty
                fh.writelines(f"any_{prefix}{job}={'true' if (data.get(key) or {}).get(job) else 'false'}\n"
                              for job in ("build", "shard"))
    return 0
