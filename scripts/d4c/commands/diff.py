"""`d4c diff ID [--against VERSION] [--build DIR] [--format markdown|json]`: the build diff.

Exit 0 when the version bump covers the change the data shows (and the build was
reproducible, if a --check result is given), 1 otherwise.
`d4c diff --combine DIR` joins the JSON reports under DIR into one bounded text
(the sticky PR comment).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from d4c import ci, paths
from d4c import recipe as recipes
from d4c.atomic import atomic_write
from d4c.diff import render
from d4c.diff.report import make_report
from d4c.errors import D4CError, UsageError

MARKER = "<!-- d4c-build-diff -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="?", help="dataset id")
    parser.add_argument("--against", metavar="VERSION", help="a released version (default: latest)")
    parser.add_argument("--build", metavar="DIR", type=Path,
                        help="the build to compare (default: .d4c/build/<id>/v<version>/)")
    parser.add_argument("--check-result", metavar="FILE", type=Path,
                        help="the <out>.check.json that `d4c build --check` writes (reproducibility "
                             "result; default: <build>.check.json beside the build, when there)")
    parser.add_argument("--format", choices=("markdown", "json"), default="markdown")
    parser.add_argument("--save", metavar="DIR", type=Path,
                        help="also write diff.md and diff.json into DIR (CI artifacts)")
    parser.add_argument("--combine", metavar="DIR", type=Path,
                        help="instead: join every */diff.json under DIR into one bounded comment")
    parser.add_argument("--pr-number", type=int, metavar="N",
                        help="with --combine --save: record the PR number for the comment workflow")
    parser.add_argument("--limit", type=int, default=None, help="maximum bytes of markdown")


def load_check(path: Path) -> dict[str, Any]:
    """Normalize the JSON result of `d4c build --check` to {"ok": bool, "details": [str]}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise D4CError(f"{path}: cannot read the --check result ({exc.strerror})") from None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("reproducible"), bool):
        raise D4CError(f"{path}: not a --check result (JSON with a boolean `reproducible`)",
                       hint="pass the <out>.check.json that `d4c build --check --out <out>` writes")
    details = [str(d) for d in data.get("differences") or []]
    if data["reproducible"]:
        varied = sorted({k for v in data.get("variations") or [] if isinstance(v, dict) for k in v})
        details = [f"two builds, the second with other {', '.join(varied) or 'host conditions'}"]
    named = data.get("manifest_sha256")
    return {"ok": data["reproducible"], "details": details,
            "manifest_sha256": named if isinstance(named, str) else None}


def _check(args: argparse.Namespace, build: Path) -> dict[str, Any] | None:
    """--check-result, else the `<build>.check.json` that `d4c build --check` writes beside it.

    A passing result vouches for the build whose manifest it names: a plain `d4c build` into
    the same folder afterwards leaves the old result there, and it must not vouch for the new
    bytes."""
    from d4c.build.check import check_result_path, manifest_sha256  # heavy: not at CLI start

    path = args.check_result or check_result_path(build)
    if not args.check_result and not path.is_file():
        print(f"note: no `d4c build --check` result at {path}: reproducibility 'not run' (run "
              f"`d4c build {args.dataset} --check`, or pass --check-result FILE)", file=sys.stderr)
        return None
    check = load_check(path)
    named, built = check.pop("manifest_sha256"), manifest_sha256(build)
    if not check["ok"] or named == built or (named is None and args.check_result):
        return check  # a failed check needs no tie; results without one (older d4c) when named
    redo = f"run `d4c build {args.dataset} --check` again, so the check is of the build the diff reads"
    if args.check_result:
        raise D4CError(f"{path} is the --check result of another build than {build} (their "
                       "manifest.json differ)", hint=redo)
    print(f"note: {path} is the --check result of an earlier build (the manifest.json in {build} "
          f"has changed since): reproducibility 'not run' ({redo})", file=sys.stderr)
    return None


def _write(path: Path, text: str) -> None:
    atomic_write(path, data=text)


def _combine(folder: Path, limit: int, save: Path | None, pr_number: int | None) -> int:
    """Join the reports; exit 0 once written (each dataset's own job carries its verdict)."""
    if pr_number is not None and pr_number <= 0:
        raise UsageError(f"--pr-number must be a positive integer, not {pr_number}")
    reports = []
    for p in sorted(folder.glob("*/diff.json")) + sorted(folder.glob("diff.json")):
        try:
            reports.append(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise D4CError(f"{p}: not a diff report ({exc})") from None
    reports.sort(key=lambda r: str(r.get("dataset")))
    text = render.combined(reports, limit, header=f"{MARKER}\n### d4c build diff")
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        _write(save / "comment.md", text)
        if pr_number is not None:
            _write(save / "pr-number.txt", f"{pr_number}\n")
    sys.stdout.write(text)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.combine is not None:
        return _combine(args.combine, args.limit or render.COMMENT_LIMIT, args.save, args.pr_number)
    if not args.dataset:
        raise UsageError("d4c diff: a dataset id is required (or --combine DIR)")
    root = paths.repo_root()
    build = args.build
    if build is None:
        recipe = recipes.load_id(args.dataset, root)
        build = paths.state_dir(root) / "build" / args.dataset / f"v{recipe.version}"
    check = _check(args, build)
    kept = build.with_name(f"{build.name}.check-differs") / "run1"
    if check is not None and not check["ok"] and not (build / "manifest.json").exists() \
            and (kept / "manifest.json").is_file():
        build = kept  # a failed --check publishes nothing but keeps both runs: diff the first
    report = make_report(root, args.dataset, build, args.against, check)
    md = render.markdown(report, args.limit or render.STEP_SUMMARY_LIMIT)
    js = render.to_json(report)
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        _write(args.save / "diff.md", md)
        _write(args.save / "diff.json", js)
    sys.stdout.write(js if args.format == "json" else md)
    failed = not report["semver"]["ok"] or (check is not None and not check["ok"])
    if failed:
        ci.annotate("error", f"{args.dataset}: {report['semver'].get('message', 'failed')}", title="d4c diff")
    return 1 if failed else 0
