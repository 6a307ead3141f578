"""`d4c build ID`: fetch sources by hash, run the transform offline, write artifacts + manifest."""
from __future__ import annotations

import argparse
from pathlib import Path

from d4c import paths, recipe
from d4c.build import BuildOptions, build, build_twice
from d4c.build.check import check_result_path
from d4c.build.runners import RUNNERS
from d4c.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="dataset id (the folder name under datasets/)")
    parser.add_argument("--out", type=Path, help="output folder (default .d4c/build/<id>/v<version>/)")
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="local",
                        help="run the transform here (local) or in the docker/ image (container)")
    parser.add_argument("--sources", choices=["auto", "mirrors"], default="auto",
                        help="where sources may come from: cache, mirrors and recipe URLs (auto) or mirrors only")
    parser.add_argument("--check", action="store_true",
                        help="build twice under varied host conditions and require identical bytes")
    parser.add_argument("--sample", action="store_true", help="cheap build with the recipe's sample params")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run the transform with no isolation at all (local runner only; recorded in the "
                             "manifest, and release refuses the build): only for code you trust, where "
                             "bubblewrap cannot run")


def run(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    rec = recipe.load_id(args.id, root)
    out = args.out or paths.state_dir(root) / "build" / rec.id / f"v{rec.version}"
    if args.no_sandbox and args.runner != "local":
        raise UsageError("--no-sandbox is for the local runner; the container is its own sandbox")
    opts = BuildOptions(runner=args.runner, sources=args.sources, sample=args.sample, sandbox=not args.no_sandbox)
    manifest = (build_twice if args.check else build)(rec, root, Path(out), opts)
    for o in manifest["outputs"]:
        rows = "" if o["rows"] is None else f"  {o['rows']} rows"
        print(f"{o['file']}  sha256:{o['sha256']}  {o['size']} bytes{rows}")
    note = f"; identical in both builds (result: {check_result_path(Path(out).absolute())})" if args.check else ""
    print(f"built {rec.id} v{rec.version} with the {args.runner} runner into {out}{note}")
    return 0
