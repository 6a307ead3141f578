"""`d4c validate [PATH...]`: schema and lints for recipes; exit 0 clean, 1 errors, 2 usage."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from d4c import ci, paths
from d4c.atomic import atomic_write
from d4c.errors import D4CError
from d4c.validate import fieldref, schema, validate_paths
from d4c.validate.formats import FORMATS, step_summary
from d4c.validate.lints import render_markdown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="recipe files, dataset folders or folders of datasets (default: datasets/)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="text",
                        help="text (path:line:col: ID message), github (annotations) or json")
    parser.add_argument("--allow-loopback", action="store_true",
                        help="accept http(s) source URLs on localhost/127.0.0.1 (for tests)")
    parser.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="worker processes for many recipes (default: one per core)")
    parser.add_argument("--write-lint-docs", type=Path, metavar="FILE",
                        help="write the lint reference (docs/lints.md) and exit")
    parser.add_argument("--write-field-docs", type=Path, metavar="FILE",
                        help="regenerate the recipe field reference inside FILE "
                             "(docs/contributing.md, between its marker lines) and exit")


def _write_docs(args: argparse.Namespace) -> None:
    for target, make in ((args.write_lint_docs, render_markdown),
                         (args.write_field_docs, lambda: fieldref.splice(
                             args.write_field_docs.read_text(encoding="utf-8"), _schema()))):
        if target is None:
            continue
        try:
            atomic_write(target, data=make())
        except OSError as exc:
            raise D4CError(f"cannot write {target}: {exc.strerror}") from None
        print(f"wrote {target}", file=sys.stderr)


def _schema() -> dict[str, Any]:
    return dict(schema.validator().schema)


def _docs_url() -> str | None:
    """The lint reference at the commit being checked, when running in GitHub Actions."""
    env = os.environ
    parts = [env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA")]
    return f"{parts[0]}/{parts[1]}/blob/{parts[2]}/docs/lints.md" if all(parts) else None


def run(args: argparse.Namespace) -> int:
    if args.write_lint_docs or args.write_field_docs:
        _write_docs(args)
        return 0
    targets = args.paths or [paths.repo_root() / "datasets"]
    findings = validate_paths(targets, allow_loopback=args.allow_loopback, jobs=args.jobs or None)
    sys.stdout.write(FORMATS[args.format](findings))
    if args.format == "github":
        ci.summary(step_summary(findings, _docs_url()))
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    files = len({f.path for f in findings})
    print(f"{errors} error(s), {warnings} warning(s)" + (f" in {files} file(s)" if files else ""),
          file=sys.stderr)
    return 1 if errors else 0
