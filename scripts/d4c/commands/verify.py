"""`d4c verify MANIFEST|RECORD|BUNDLE|ITEM-URL [--mirror NAME]`: rebuild and compare hashes.

A record, a bundle or a catalog item says where the copies are (d4c.copies): the sources
are fetched by sha256 from the mirrors it names, then from the recipe's URLs (not with
`--mirror` or `--sources mirrors`). A record whose recipe is not the one checked out here
is rebuilt from its source bundle, fetched from the same mirrors, so a record alone is
enough. Nothing here needs a credential or an environment variable.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import requests

from d4c import copies as cp
from d4c import fetch, http, model, paths, recipe
from d4c.build import BuildOptions, build
from d4c.errors import D4CError

JSON_MAX = 64 << 20  # a record, manifest or item fetched by URL
BUNDLE_MAX = 2 << 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a manifest.json, a release record releases/<id>/<version>.json, "
                        "a source bundle <id>_v<version>_source.tar.gz, or the URL of a catalog item")
    parser.add_argument("--sources", choices=["auto", "mirrors"], default="auto",
                        help="mirrors the document names, then recipe URLs (auto), or mirrors only")
    parser.add_argument("--mirror", metavar="NAME",
                        help="use only this mirror's copies (a target name in the record or bundle)")
    parser.add_argument("--runner", choices=["local", "container"],
                        help="override the runner recorded in the manifest")


def rebuild(root: Path, expected: model.Manifest, args: argparse.Namespace,
            found: cp.Copies) -> dict[str, Any]:
    path = (root / expected.recipe_path).resolve()
    if not path.is_relative_to(root.resolve() / "datasets"):  # a bundle may come from anyone
        raise D4CError(f"the manifest's recipe_path {expected.recipe_path!r} is outside datasets/",
                       hint="this is not a manifest d4c wrote; get the release from a mirror you trust")
    rec = recipe.load(path)
    if rec.sha256 != expected.doc["dataset"]["recipe_sha256"]:
        raise D4CError(f"{rec.path} is not the recipe this manifest was built from (sha256 differs)",
                       hint=f"check out {expected.commit or 'the commit that built it'} "
                            "or verify from its release record or source bundle")
    sources = "copies" if args.mirror else args.sources
    opts = BuildOptions(runner=args.runner or expected.runner or "local", sources=sources,
                        sample=bool(expected.doc.get("sample", False)),
                        source_copies=found.source_urls())
    out = Path(tempfile.mkdtemp(prefix="d4c-verify-")) / "build"
    try:
        with _own_cache(out.parent / "cache") if args.mirror else nullcontext():
            return build(rec, root, out, opts)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


@contextmanager
def _own_cache(folder: Path) -> Iterator[None]:
    """`--mirror`: an empty source cache of the verify's own, so every source comes from that
    mirror: a cache an earlier build or fetch warmed would pass without reading it."""
    before = os.environ.get("D4C_CACHE")
    os.environ["D4C_CACHE"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("D4C_CACHE", None)
        else:
            os.environ["D4C_CACHE"] = before


def compare(expected: model.Manifest, actual: dict[str, Any]) -> int:
    """Print one line per artifact and the verdict; 1 when any differs."""
    got = {o["name"]: o for o in actual["outputs"]}
    different = 0
    for o in expected.doc["outputs"]:
        new = got.get(o["name"])
        if new and new["sha256"] == o["sha256"]:
            print(f"identical  {o['file']}  sha256:{o['sha256']}")
            continue
        different += 1
        detail = f"rebuilt sha256:{new['sha256']}" if new else "not produced by the rebuild"
        same = new and new["logical_sha256"] == o["logical_sha256"]
        print(f"DIFFERENT  {o['file']}  expected sha256:{o['sha256']}, {detail}"
              + (" (same rows and schema: encoding differs)" if same else ""))
    verdict = "identical" if not different else f"{different} artifact(s) differ"
    print(f"{expected.dataset_id} v{expected.version}: {verdict}")
    return 0 if not different else 1


def _git_repo(top: Path, epoch: int) -> None:
    """A one-commit repository dated at SOURCE_DATE_EPOCH: what the build reads."""
    date = f"@{epoch} +0000"
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    git = ["git", "-c", "user.name=d4c verify", "-c", "user.email=verify@dataforcanada.org"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "source bundle"]):
        subprocess.run([*git, *cmd], cwd=top, env=env, check=True, capture_output=True)


def verify_bundle(bundle: Path, args: argparse.Namespace, known: cp.Copies, tmp: Path) -> int:
    """Unpack a source bundle and rebuild from it alone, with the sources its mirrors hold."""
    from d4c.release.bundle import extract_bundle

    top = extract_bundle(bundle, tmp / "bundle")
    expected = model.load_manifest(top / "manifest.json")
    listed = top / cp.MIRRORS_FILE
    if listed.is_file():
        doc = model.read_json(listed, "mirrors list")
        known = cp.merged(known, cp.from_mirrors_doc(doc, str(listed)),
                          cp.looked_up(doc, expected.dataset_id, expected.version, args.mirror))
    _git_repo(top, expected.source_date_epoch)
    old = os.environ.get("D4C_REPO")
    os.environ["D4C_REPO"] = str(top)
    try:
        print(f"unpacked {bundle.name}; rebuilding from it alone")
        return compare(expected, rebuild(top, expected, args, known.only(args.mirror)))
    finally:
        if old is None:
            os.environ.pop("D4C_REPO", None)
        else:
            os.environ["D4C_REPO"] = old


def _same_recipe_here(expected: model.Manifest) -> bool:
    try:
        path = paths.repo_root() / expected.recipe_path
    except D4CError:
        return False
    return path.is_file() and recipe.load(path).sha256 == expected.doc["dataset"]["recipe_sha256"]


def _get_bundle(urls: dict[str, str], sha256: str | None, tmp: Path) -> Path:
    dest = tmp / "source.tar.gz"
    for url in urls.values():
        if sha256 and fetch.get_verified(url, dest, sha256, max_bytes=BUNDLE_MAX):
            return dest
    tried = ", ".join(f"{n}: {u}" for n, u in urls.items()) or "none listed"
    raise D4CError(f"no verified copy of the source bundle (tried {tried})",
                   hint="try another --mirror, or check out the commit and verify the record there")


def verify_record(rec: model.ReleaseRecord, args: argparse.Namespace, tmp: Path) -> int:
    found = cp.from_record(rec).only(args.mirror)
    if _same_recipe_here(rec.manifest):
        return compare(rec.manifest, rebuild(paths.repo_root(), rec.manifest, args, found))
    print(f"{rec.id} v{rec.version}: its recipe is not checked out here; using its source bundle")
    return verify_bundle(_get_bundle(found.bundle, found.bundle_sha256, tmp), args, found, tmp)


def verify_item(item: dict[str, Any], args: argparse.Namespace, tmp: Path) -> int:
    """A catalog item: its source bundle asset (main href, then alternates) holds the rest."""
    try:
        asset = next(a for a in item["assets"].values() if "source" in (a.get("roles") or []))
        sha = str(asset["file:checksum"]).removeprefix("1220")
        urls = {"main": asset["href"], **{n: a["href"] for n, a in (asset.get("alternate") or {}).items()}}
    except (StopIteration, KeyError, TypeError, AttributeError):
        raise D4CError("the catalog item has no source bundle asset with a file:checksum",
                       hint="give the release record or the bundle instead") from None
    if args.mirror:
        if args.mirror not in urls:
            raise D4CError(f"the item's bundle has no copy named {args.mirror!r}",
                           hint=f"copies: {', '.join(sorted(urls))}")
        urls = {args.mirror: urls[args.mirror]}
    return verify_bundle(_get_bundle(urls, sha, tmp), args, cp.Copies({}, {}), tmp)


def _local(spec: str, tmp: Path) -> Path:
    """The document to verify as a local file: a URL is fetched (size-capped) first."""
    if fetch.local_path(spec) is not None:
        return Path(spec)
    name = spec.rstrip("/").rsplit("/", 1)[-1] or "document.json"
    dest = tmp / name
    try:
        with http.session().get(spec, stream=True, timeout=http.DEFAULT_TIMEOUT) as resp:
            resp.raise_for_status()
            size = 0
            with dest.open("wb") as out:
                for chunk in resp.iter_content(1 << 20):
                    size += len(chunk)
                    if size > (BUNDLE_MAX if name.endswith(".tar.gz") else JSON_MAX):
                        raise D4CError(f"{spec}: larger than expected; not a d4c document")
                    out.write(chunk)
    except requests.RequestException as exc:
        raise D4CError(f"cannot fetch {spec}: {exc}", hint="check the URL") from None
    return dest


def run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="d4c-verify-"))
    try:
        path = _local(str(args.file), tmp)
        if path.name.endswith(".tar.gz"):
            return verify_bundle(path, args, cp.Copies({}, {}), tmp)
        doc = model.read_json(path, "manifest, release record or catalog item")
        if isinstance(doc, dict) and doc.get("type") == "Feature" and "stac_version" in doc:
            return verify_item(doc, args, tmp)
        typed = model.load_either(path)
        if isinstance(typed, model.ReleaseRecord):
            return verify_record(typed, args, tmp)
        root = paths.repo_root()
        return compare(typed, rebuild(root, typed, args, cp.Copies({}, {}).only(args.mirror)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
