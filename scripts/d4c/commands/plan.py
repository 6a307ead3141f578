"""`d4c plan --base REF [--head REF]`: the datasets a change touches, as JSON for a CI matrix.

`d4c plan --released all|ID|ID/VERSION`: the release records to verify, as a CI matrix.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from d4c import argo, fanout, paths
from d4c.errors import D4CError, UsageError
from d4c.plan import commit_of, dumps, for_run, plan, released

RUN_ID = re.compile(r"[1-9][0-9]{0,19}")  # fullmatch: `$` would let a trailing newline through
SHA = re.compile(r"[0-9a-f]{40}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", help="the ref the change starts from (e.g. origin/main)")
    parser.add_argument("--head", default="HEAD", help="the ref the change ends at (default: HEAD)")
    parser.add_argument(
        "--github-output", action="store_true",
        help="also append `json=<plan>` and per-key outputs to $GITHUB_OUTPUT (for workflows)",
    )
    parser.add_argument("--released", metavar="SELECTOR",
                        help="instead: list release records (all, ID or ID/VERSION) for verify")
    parser.add_argument("--chunk", type=int, metavar="K",
                        help="only the rows of chunk K (one run of a chain past 256 matrix rows; docs/scale.md)")
    parser.add_argument("--previous-run", default="", metavar="RUN_ID",
                        help="with --chunk K > 1: the run of chunk K-1, whose shards and images this one takes")
    parser.add_argument("--images", default="", metavar="JSON",
                        help="with --chunk K > 1: the image ids the run of chunk K-1 built ({id: sha256:...})")
    parser.add_argument("--previous-run-of", default="", metavar="WORKFLOW@BRANCH",
                        help="with --previous-run: check through GitHub's API ($GITHUB_TOKEN, actions: read) that "
                             "it is a push or dispatch run of this workflow on this branch, not a pull request's")
    parser.add_argument("--commit", default="", metavar="SHA",
                        help="with --chunk: the commit a dispatched run was given; it must be HEAD, as 40 hex digits")
    parser.add_argument("--commit-on", default="", metavar="REF",
                        help="with --commit: the branch it must be on (e.g. origin/main): a dispatch cannot "
                             "release a commit the branch never had")
    parser.add_argument("--single-run", action="store_true",
                        help="fail if the change's jobs need more than one run (pull requests do not chain)")
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
        if args.released is not None or args.github_output or args.chunk is not None:
            raise UsageError("--format argo takes --base/--head only (Argo runs every chunk in one Workflow)")
        yaml = YAML()  # block style, keys in the order written: same plan, same bytes
        yaml.default_flow_style = False
        yaml.dump(argo.workflow(data, args.argo_repo, commit_of(paths.repo_root(), args.head), args.argo_image),
                 sys.stdout)
        return 0
    if args.released is None:
        data = _chained(args, data)
    text = dumps(data)
    print(text)
    if args.github_output:
        _github_output(data, text, args.previous_run)
    return 0


def _chained(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """The plan for one run: with --single-run, the change must fit one; with --chunk, that chunk's rows."""
    if args.single_run and data["chunks"] > 1:
        raise D4CError(f"the change needs {data['chunks']} runs of at most {fanout.MATRIX_LIMIT} jobs per matrix "
                       f"({len(data['jobs']['shard'])} shard jobs, {len(data['jobs']['build'])} builds), and a pull "
                       "request's checks run once", hint="split the change across pull requests, or lower "
                       "`shards.max`; the release on merge chains runs (docs/scale.md)")
    if args.chunk is None:
        if args.commit:
            raise UsageError("--commit checks a chained run's commit: it goes with --chunk K")
        return data
    if args.previous_run and not RUN_ID.fullmatch(args.previous_run):
        raise UsageError(f"--previous-run {args.previous_run[:40]!r}: not a workflow run id (digits)")
    if args.chunk > 1 and not args.previous_run:
        raise UsageError(f"--chunk {args.chunk} needs --previous-run (the run of chunk {args.chunk - 1})")
    if args.previous_run and args.previous_run_of:
        from d4c.commands.chain import check_previous_run

        check_previous_run(args.previous_run, args.previous_run_of)
    head = commit_of(paths.repo_root(), args.head)
    _dispatched(args.commit, args.commit_on, head)
    data = {**for_run(data, args.chunk), "commit": head, "images": fanout.image_ids(args.images, "--images")}
    last = data["release_chunks"]
    return {**data, "next_chunk": args.chunk + 1 if args.chunk < last else None}


def _dispatched(given: str, branch: str, head: str) -> None:
    """A dispatched run checks out its `commit` input before d4c runs: a branch, tag or pull
    request ref would be checked out and released alike, so it must be the 40-hex HEAD, on
    the branch the chain runs on."""
    if not given:
        return
    if not SHA.fullmatch(given) or given != head:
        raise UsageError(f"--commit {given[:60]!r} is not the commit checked out ({head})",
                         hint="a chained run is given the 40-hex commit its chain planned (d4c chain)")
    if branch:
        on = commit_of(paths.repo_root(), branch)
        proc = subprocess.run(["git", "merge-base", "--is-ancestor", head, on], cwd=paths.repo_root(),
                              capture_output=True, check=False)
        if proc.returncode != 0:
            raise D4CError(f"--commit {head} is not on {branch}",
                           hint="a chain builds a commit its branch has; dispatch it on that branch")


def _github_output(data: dict[str, Any], text: str, previous_run: str) -> None:
    out = os.environ.get("GITHUB_OUTPUT")
    if not out:
        raise D4CError("--github-output given but GITHUB_OUTPUT is not set",
                       hint="only use --github-output inside GitHub Actions")
    with Path(out).open("a", encoding="utf-8") as fh:
        fh.write(f"json={text}\n")
        fh.write(f"any={'true' if data.get('datasets') or data.get('records') else 'false'}\n")
        fh.write(f"any_release={'true' if data.get('release_matrix') else 'false'}\n")
        for prefix, key in (("", "jobs"), ("release_", "release_jobs")):  # guards: a matrix may not be empty
            fh.writelines(f"any_{prefix}{job}={'true' if (data.get(key) or {}).get(job) else 'false'}\n"
                          for job in ("build", "image", "shard", "reduce"))
        if "chunk" in data:  # a run of the chain: what the next one is given
            fh.write(f"chunk={data['chunk']}\ncommit={data['commit']}\nprevious_run={previous_run}\n")
            fh.write(f"next_chunk={data['next_chunk'] or ''}\n")
            fh.write(f"images={json.dumps(data['images'], separators=(',', ':'))}\n")
