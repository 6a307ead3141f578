"""`d4c verify MANIFEST|RECORD`: rebuild and compare every artifact's sha256."""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from d4c import paths, recipe
from d4c.build import BuildOptions, build
from d4c.build import manifest as mf
from d4c.errors import D4CError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a manifest.json or a release record releases/<id>/<version>.json")
    parser.add_argument("--sources", choices=["auto", "mirrors"], default="auto",
                        help="fetch sources from cache, mirrors and recipe URLs (auto) or mirrors only")
    parser.add_argument("--runner", choices=["local", "container"],
                        help="override the runner recorded in the manifest")


def expected_manifest(path: Path) -> dict[str, Any]:
    """The manifest held in a manifest file or a release record."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise D4CError(f"cannot read {path}: {exc}", hint="give a manifest.json or a release record") from None
    if isinstance(doc, dict) and "record_version" in doc and isinstance(doc.get("manifest"), dict):
        doc = doc["manifest"]
    if not isinstance(doc, dict) or "manifest_version" not in doc:
        raise D4CError(f"{path} is neither a build manifest nor a release record")
    mf.validate(doc, where=str(path))
    return doc


def rebuild(expected: dict[str, Any], runner: str | None, sources: str) -> dict[str, Any]:
    root = paths.repo_root()
    rec = recipe.load(root / expected["dataset"]["recipe_path"])
    if rec.sha256 != expected["dataset"]["recipe_sha256"]:
        commit = expected["code"]["commit"] or "the commit that built it"
        raise D4CError(f"{rec.path} is not the recipe this manifest was built from (sha256 differs)",
                       hint=f"check out {commit} or verify from its source bundle")
    opts = BuildOptions(runner=runner or expected["environment"]["runner"], sources=sources,
                        sample=bool(expected.get("sample", False)))
    out = Path(tempfile.mkdtemp(prefix="d4c-verify-")) / "build"
    try:
        return build(rec, root, out, opts)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    expected = expected_manifest(args.file)
    actual = {o["name"]: o for o in rebuild(expected, args.runner, args.sources)["outputs"]}
    different = 0
    for o in expected["outputs"]:
        got = actual.get(o["name"])
        if got and got["sha256"] == o["sha256"]:
            print(f"identical  {o['file']}  sha256:{o['sha256']}")
            continue
        different += 1
        detail = f"rebuilt sha256:{got['sha256']}" if got else "not produced by the rebuild"
        same_data = " (same rows and schema: encoding differs)" if got and got["logical_sha256"] == o["logical_sha256"] else ""
        print(f"DIFFERENT  {o['file']}  expected sha256:{o['sha256']}, {detail}{same_data}")
    ds = expected["dataset"]
    verdict = "identical" if not different else f"{different} artifact(s) differ"
    print(f"{ds['id']} v{ds['version']}: {verdict}")
    return 0 if not different else 1
