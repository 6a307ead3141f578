"""`d4c verify MANIFEST|RECORD`: rebuild and compare every artifact's sha256."""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from d4c import model, paths, recipe
from d4c.build import BuildOptions, build
from d4c.errors import D4CError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a manifest.json, a release record releases/<id>/<version>.json, "
                        "or a source bundle <id>_v<version>_source.tar.gz")
    parser.add_argument("--sources", choices=["auto", "mirrors"], default="auto",
                        help="fetch sources from cache, mirrors and recipe URLs (auto) or mirrors only")
    parser.add_argument("--runner", choices=["local", "container"],
                        help="override the runner recorded in the manifest")


def expected_manifest(path: Path) -> dict[str, Any]:
    """The manifest held in a manifest file or a release record (d4c.model checks both)."""
    doc = model.load_either(path)
    return (doc.manifest if isinstance(doc, model.ReleaseRecord) else doc).doc


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


def _run_bundle(args: argparse.Namespace) -> int:
    """A source bundle: unpack it, make it a one-commit git repo dated at the manifest's
    SOURCE_DATE_EPOCH (what the build reads), and verify from it alone."""
    import os
    import subprocess

    from d4c.release.bundle import extract_bundle

    tmp = Path(tempfile.mkdtemp(prefix="d4c-bundle-"))
    old = os.environ.get("D4C_REPO")
    try:
        top = extract_bundle(args.file, tmp)
        epoch = f"@{model.load_manifest(top / 'manifest.json').source_date_epoch} +0000"
        env = {**os.environ, "GIT_AUTHOR_DATE": epoch, "GIT_COMMITTER_DATE": epoch}
        git = ["git", "-c", "user.name=d4c verify", "-c", "user.email=verify@dataforcanada.org"]
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "source bundle"]):
            subprocess.run([*git, *cmd], cwd=top, env=env, check=True, capture_output=True)
        os.environ["D4C_REPO"] = str(top)
        print(f"unpacked {args.file.name}; rebuilding from it alone")
        return run(argparse.Namespace(**{**vars(args), "file": top / "manifest.json"}))
    finally:
        if old is None:
            os.environ.pop("D4C_REPO", None)
        else:
            os.environ["D4C_REPO"] = old
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    if args.file.name.endswith(".tar.gz"):
        return _run_bundle(args)
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
