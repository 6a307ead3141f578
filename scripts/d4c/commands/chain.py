"""`d4c chain --workflow release.yml --ref main --chunk K --commit SHA --base SHA`: start run K
of a chained release (one workflow run holds at most 256 rows per matrix; docs/scale.md).

It asks GitHub for a `workflow_dispatch` run of the workflow with the inputs the next run's
plan job reads: the chunk, the plan's commit and base (so every run plans and builds the same
commit), this run's id and its image ids (the next run takes the shards and image of a
dataset that spans both runs from this one, and checks the image against that id). GITHUB_TOKEN needs `actions: write`; a dispatch made with the
GITHUB_TOKEN starts a run, unlike other events it raises.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

import requests

from d4c import fanout, http
from d4c.errors import D4CError, UsageError
from d4c.redact import redact

SHA = re.compile(r"^[0-9a-f]{40}\Z")  # \Z, not $: `$` lets a trailing newline through
RUN_ID = re.compile(r"^[1-9][0-9]{0,19}\Z")
WORKFLOW = re.compile(r"^[A-Za-z0-9_.-]+\.ya?ml\Z")
REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+\Z")
REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}\Z")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workflow", required=True, help="the workflow file to run again (e.g. release.yml)")
    parser.add_argument("--ref", required=True, help="the branch the next run's workflow file is read from")
    parser.add_argument("--chunk", type=int, required=True, help="the chunk the next run takes (2, 3, ...)")
    parser.add_argument("--commit", required=True, help="the commit every run of the chain plans and builds")
    parser.add_argument("--base", required=True, help="the plan's base commit (the push's `before`)")
    parser.add_argument("--images", default="", metavar="JSON",
                        help="this run's image job output `ids` ({id: sha256:...}): a dataset whose shards go "
                             "on in the next run is checked against it there")


def _env(name: str, pattern: re.Pattern[str], default: str = "") -> str:
    value = os.environ.get(name, default)
    if not pattern.match(value):
        raise D4CError(f"d4c chain: ${name} is {'not set' if not value else 'not what GitHub Actions sets'}",
                       hint="run it in a GitHub Actions job (it sets GITHUB_REPOSITORY and GITHUB_RUN_ID)")
    return value


def inputs(args: argparse.Namespace) -> dict[str, str]:
    """The next run's workflow_dispatch inputs, each checked: they reach its plan job."""
    checks = (("--commit", args.commit, SHA), ("--base", args.base, SHA), ("--workflow", args.workflow, WORKFLOW),
              ("--ref", args.ref, REF))
    for flag, value, pattern in checks:
        if not pattern.match(value) or ".." in value:
            raise UsageError(f"d4c chain: {flag} {value[:60]!r} is not valid", hint="see `d4c chain --help`")
    if args.chunk < 2:
        raise UsageError(f"d4c chain: --chunk {args.chunk}: the first run is the push's; a chained one is 2 or more")
    images = fanout.image_ids(args.images, "d4c chain --images")
    return {"chunk": str(args.chunk), "commit": args.commit, "base": args.base,
            "previous_run": _env("GITHUB_RUN_ID", RUN_ID), "images": json.dumps(images, separators=(",", ":"))}


def _github(method: str, path: str, what: str, hint: str, **kw: Any) -> requests.Response:
    """One call to GitHub's API with $GITHUB_TOKEN; a transport failure is one line."""
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise D4CError("d4c chain: $GITHUB_TOKEN is not set",
                       hint="pass ${{ github.token }} (actions: write to dispatch, read to check a run)")
    api = os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    try:  # a POST is never re-sent by the session: a lost answer is reported, not a second run started
        return http.session().request(method, f"{api}{path}", headers={
            "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28"}, **kw)
    except requests.RequestException as exc:
        raise D4CError(f"d4c chain: {what} failed: {http.describe(exc)}", hint=hint) from None


def check_previous_run(run_id: str, of: str) -> None:
    """`--previous-run` must be a push or dispatch run of `of` (WORKFLOW@BRANCH) of this
    repository: its `image` and `shard.*` artifacts are taken, and a pull request's run (a
    fork's code) uploads artifacts of the same names."""
    workflow, _, branch = of.partition("@")
    if not WORKFLOW.match(workflow) or not REF.match(branch):
        raise UsageError(f"--previous-run-of {of[:60]!r}: not WORKFLOW@BRANCH (e.g. release.yml@main)")
    repo = _env("GITHUB_REPOSITORY", REPO)
    resp = _github("GET", f"/repos/{repo}/actions/runs/{run_id}", f"reading run {run_id}",
                   "run the plan job again once GitHub answers")
    try:
        run = resp.json() if resp.status_code == 200 else None
        seen = (str(run["path"]).partition("@")[0].removeprefix(f"{repo}/"), run["event"], run["head_branch"],
                run["head_repository"]["full_name"]) if isinstance(run, dict) else None
    except (ValueError, KeyError, TypeError):
        seen = None
    if seen is None:
        raise D4CError(f"--previous-run {run_id}: GitHub answered {resp.status_code} for the run: "
                       f"{redact(resp.text[:200])}", hint="the plan job needs `permissions: actions: read`")
    if seen[0] != f".github/workflows/{workflow}" or seen[1] not in ("push", "workflow_dispatch") \
            or seen[2] != branch or seen[3] != repo:
        raise D4CError(f"--previous-run {run_id} is a {seen[1]} run of {seen[0]} on {seen[3]}:{seen[2]}, "
                       f"not a run of {workflow} on {branch}", hint="a chained run takes the artifacts of "
                       "the run that dispatched it (d4c chain passes its own GITHUB_RUN_ID)")


def run(args: argparse.Namespace) -> int:
    body = {"ref": args.ref, "inputs": inputs(args)}
    repo = _env("GITHUB_REPOSITORY", REPO)
    resp = _github("POST", f"/repos/{repo}/actions/workflows/{args.workflow}/dispatches",
                   f"dispatching {args.workflow}", "check the Actions tab for a run of chunk "
                   f"{args.chunk} before dispatching it by hand", json=body)
    if resp.status_code not in (200, 204):
        raise D4CError(f"d4c chain: dispatching {args.workflow} on {args.ref} answered {resp.status_code}: "
                       f"{redact(resp.text[:200])}",
                       hint="the job needs `permissions: actions: write` and the workflow a workflow_dispatch "
                            "trigger with the inputs chunk, commit, base, previous_run and images")
    print(f"dispatched {args.workflow} on {args.ref}: chunk {args.chunk} of commit {args.commit}")
    return 0
