"""`d4c build ID`: fetch sources by hash, run the transform offline, write artifacts + manifest."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from d4c import paths, recipe
from d4c.build import BuildOptions, build, build_twice, shard_check, shard_reduce, shards
from d4c.build.check import check_result_path
from d4c.build.runners import RUNNERS, image
from d4c.commands.images import archived_id
from d4c.errors import D4CError, UsageError
from d4c.fanout import IMAGE_ID


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="dataset id (the folder name under datasets/)")
    parser.add_argument("--out", type=Path, help="output folder (default .d4c/build/<id>/v<version>/)")
    parser.add_argument("--runner", choices=sorted(RUNNERS), default="local",
                        help="run the transform here (local) or in the docker/ image (container)")
    parser.add_argument("--sources", choices=["auto", "mirrors"], default="auto",
                        help="where sources may come from: cache, mirrors and recipe URLs (auto) or mirrors only")
    parser.add_argument("--check", action="store_true",
                        help="build twice under varied host conditions and require identical bytes")
    parser.add_argument("--sample", action="store_true", help="cheap build: the recipe's sample params and smaller "
                             "sample sources (a manifest marked sample: true, which release refuses)")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run the transform with no isolation at all (local runner only; recorded in the "
                             "manifest, and release refuses the build): only for code you trust, where "
                             "bubblewrap cannot run")
    shard = parser.add_mutually_exclusive_group()
    shard.add_argument("--shard", metavar="N/M",
                       help="build shard N of M of a recipe with `shards:` into --out (its files and shard.json)")
    shard.add_argument("--reduce", nargs="+", type=Path, metavar="DIR",
                       help="verify these shard builds (one folder per shard) and merge them into the artifacts")
    shard.add_argument("--whole", action="store_true",
                       help="build a recipe with `shards:` as one process over every file (no shards, no reduce)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="shards built at once by a local sharded build (default: the CPU count)")
    saved = parser.add_mutually_exclusive_group()
    saved.add_argument("--save-image", type=Path, metavar="FILE",
                       help="container runner: build the recipe's image and save it to FILE, then stop (CI builds "
                            "it once, so every shard job runs the same image)")
    saved.add_argument("--load-image", type=Path, metavar="FILE",
                       help="container runner: load the image saved with --save-image (it must be this commit's) first")
    parser.add_argument("--image-id", metavar="sha256:HEX",
                        help="with --load-image: the image id the archive must hold (CI: the image job's output)")


def run(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    rec = recipe.load_id(args.id, root)
    out = args.out or paths.state_dir(root) / "build" / rec.id / f"v{rec.version}"
    if args.no_sandbox and args.runner != "local":
        raise UsageError("--no-sandbox is for the local runner; the container is its own sandbox")
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs takes a whole number of at least 1")
    opts = BuildOptions(runner=args.runner, sources=args.sources, sample=args.sample, sandbox=not args.no_sandbox,
                        whole=args.whole, jobs=args.jobs)
    if (args.save_image or args.load_image) and args.runner != "container":
        raise UsageError("--save-image and --load-image are for --runner container")
    if args.image_id is not None and not args.load_image:
        raise UsageError("--image-id is for --load-image: it names the image the archive must hold")
    if args.save_image:
        print(f"saved {image.save_image(root, rec, args.save_image)} to {args.save_image}")
        return 0
    if args.load_image:
        if args.image_id is not None:
            expect_image(root, rec, args.load_image, args.image_id)
        print(f"loaded {image.load_image(root, rec, args.load_image)} from {args.load_image}")
    if args.shard or args.reduce:
        return _shard_or_reduce(args, rec, root, Path(out), opts)
    sharded = rec.shards is not None and not args.whole
    check = shard_check.check_local if sharded else build_twice
    manifest = (check if args.check else build)(rec, root, Path(out), opts)
    print_outputs(manifest)
    note = f"; identical in both builds (result: {check_result_path(Path(out).absolute())})" if args.check else ""
    print(f"built {rec.id} v{rec.version} with the {args.runner} runner into {out}{note}")
    return 0


def print_outputs(manifest: dict[str, Any]) -> None:
    """One line per artifact; rows only for the formats that have them (not PMTiles or COG)."""
    for o in manifest["outputs"]:
        rows = "" if o["rows"] is None else f"  {o['rows']} rows"
        print(f"{o['file']}  sha256:{o['sha256']}  {o['size']} bytes{rows}")


def expect_image(root: Path, rec: recipe.Recipe, archive: Path, want: str) -> None:
    """Refuse, before loading, an archive whose image is not `want` (the image job's output)."""
    if not IMAGE_ID.match(want):
        raise UsageError(f"--image-id {want[:80]!r} is not an image id (sha256:<64 hex>)",
                         hint="pass the image job's `ids` output for this dataset; empty: that job gave none")
    found = archived_id(root, rec, archive)
    if found != want:
        raise D4CError(f"{archive} holds image {found}, not {want}, the one the image job built (--image-id)",
                       hint="the archive did not come from this run's image job: download its artifact again")


def _shard_or_reduce(args: argparse.Namespace, rec: recipe.Recipe, root: Path, out: Path, opts: BuildOptions) -> int:
    if args.check and args.shard:
        raise UsageError("--check with --shard: check at the reduce (`--reduce DIR... --check` rebuilds a seeded "
                         "subset of the shards), or run `d4c build ID --check`")
    if args.shard:
        index, count = shards.parse_shard(args.shard)
        if args.out is None:
            out = shard_reduce.shards_dir(out) / str(index)
        if rec.shards is not None and count != rec.shards.max:
            raise UsageError(f"--shard {args.shard}: {rec.id} declares {rec.shards.max} shards (`shards.max`)")
        doc = shards.build_shard(rec, root, out, opts, index, count)
        print(f"built {rec.id} v{rec.version} shard {index}/{count} ({len(doc['inputs'])} files) into {out}")
        return 0
    merge = shard_check.check_reduce if args.check else shard_reduce.reduce
    manifest = merge(rec, root, list(args.reduce), out, opts)
    print_outputs(manifest)
    note = f"; a seeded subset rebuilt twice, identical (result: {check_result_path(out.absolute())})" \
        if args.check else ""
    print(f"reduced {len(args.reduce)} shards of {rec.id} v{rec.version} into {out}{note}")
    return 0
