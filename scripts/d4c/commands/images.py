"""`d4c images --out DIR --datasets '["id", ...]' [--github-output]`: the CI `image` job.

It builds and saves each sharded dataset's container image to DIR/<id>.tar and records the
image id each archive holds (its manifest.json's config digest, what `--load-image` finds)
as the job output `ids` ({"<id>": "sha256:..."}). Every shard and reduce job passes its
dataset's id to `d4c build --load-image FILE --image-id ID`, which refuses any other archive:
the id comes from this job's output, not from the artifact, so an archive uploaded by any
other job of the run is refused. docs/scale.md.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from d4c import paths, recipe
from d4c.build.runners import container, image
from d4c.errors import D4CError, UsageError
from d4c.fanout import DATASET_ID


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder for the archives (<id>.tar each)")
    parser.add_argument("--datasets", required=True, metavar="JSON",
                        help='the dataset ids, a JSON list (e.g. the plan\'s `image` rows: ["ca_x_y", ...])')
    parser.add_argument("--github-output", action="store_true",
                        help="also append `ids=<JSON map of id -> image id>` to $GITHUB_OUTPUT")


def archived_id(root: Path, rec: recipe.Recipe, archive: Path) -> str:
    """The id of the recipe's image at this commit, as the archive's own manifest.json records it."""
    tag = container.image_tag(root, container.dockerfile_of(root, rec))
    found = image.archived_ids(archive).get(tag)
    if found is None:
        raise D4CError(f"{archive} does not hold {tag}, the image of {rec.id} at this commit",
                       hint="save it again with `d4c images` or `d4c build ID --runner container --save-image FILE`")
    return found


def save_all(root: Path, recipes: list[recipe.Recipe], out: Path) -> dict[str, str]:
    """Save each recipe's image to out/<id>.tar; id -> the image id its archive holds."""
    ids: dict[str, str] = {}
    for rec in recipes:
        archive = out / f"{rec.id}.tar"
        image.save_image(root, rec, archive)
        ids[rec.id] = archived_id(root, rec, archive)
        print(f"saved {ids[rec.id]} ({rec.id}) to {archive}", flush=True)
    return ids


def _datasets(text: str) -> list[str]:
    try:
        listed = json.loads(text)
    except ValueError:
        listed = None
    if not isinstance(listed, list) or not all(isinstance(x, str) and DATASET_ID.match(x) for x in listed) \
            or len(set(listed)) != len(listed):
        raise UsageError(f"--datasets {text[:60]!r}: not a JSON list of distinct dataset ids")
    return listed


def run(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    recipes = [recipe.load_id(ds, root) for ds in _datasets(args.datasets)]  # every id checked before a build
    out_file = os.environ.get("GITHUB_OUTPUT") if args.github_output else None
    if args.github_output and not out_file:
        raise D4CError("--github-output given but GITHUB_OUTPUT is not set",
                       hint="only use --github-output inside GitHub Actions")
    ids = save_all(root, recipes, args.out)
    if out_file:
        with Path(out_file).open("a", encoding="utf-8") as fh:
            fh.write(f"ids={json.dumps(ids, sort_keys=True, separators=(',', ':'))}\n")  # one line: a job output
    return 0
