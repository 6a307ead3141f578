"""`d4c release`: publish one built version to every target, exactly once, resumable.

Order: read the build (made beforehand by `d4c build`, never here: this process holds
the credentials, and a transform is untrusted code) -> source bundle -> prepare every target
(e.g. reserve the DOI) -> torrents (web seeds need the prepared URLs; they sit outside
the infohash) -> upload + verify every file on every target, raw sources to source
mirrors -> `retain: latest` cleanup (only after all verified) -> finalize (publish) ->
release record -> catalog. Every step looks before it acts; the journal records facts
in the primary target so a rerun on any machine resumes.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from d4c import paths
from d4c import recipe as recipes
from d4c.catalog.append import append_record
from d4c.digest import digest_file
from d4c.errors import D4CError
from d4c.release import config as cfgmod
from d4c.release.bundle import make_bundle
from d4c.release.files import build_dir_for, digest_small, read_build, source_file
from d4c.release.journal import Journal
from d4c.release.record import build_record, write_record
from d4c.release.targets import (
    BaseTarget,
    ReleaseContext,
    ReleaseFile,
    StateStore,
    Target,
    make_target,
)
from d4c.release.targets.base import source_key
from d4c.release.torrent import TorrentInfo, make_torrent

log = logging.getLogger("d4c.release")
SideEffect = Callable[[str], None]


def _noop(what: str) -> None:
    return None


def select_targets(rcp: recipes.Recipe, cfg: cfgmod.TargetsConfig,
                   notes: list[str] | None = None) -> list[Target]:
    """The recipe's targets, made. With `notes` (dry run), a target that cannot be made
    (e.g. its credentials are not set here) is planned from its config alone."""
    wanted = (rcp.data.get("distribution") or {}).get("targets", "all")
    configs = [c for c in cfg.targets if wanted == "all" or c.name in wanted]
    if wanted != "all":
        unknown = sorted(set(wanted) - {c.name for c in cfg.targets})
        if unknown:
            raise D4CError(f"{rcp.path}: distribution.targets names unknown target {unknown[0]!r}",
                           hint="add it to the targets config or fix the name")
    if not configs:
        raise D4CError(f"{rcp.path}: no configured target matches distribution.targets")
    if notes is None:
        return [make_target(c) for c in configs]
    made: list[Target] = []
    for c in configs:
        try:
            made.append(make_target(c))
        except D4CError as exc:
            notes.append(f"note: {exc.line()}")
            plain = BaseTarget(c)
            plain.kind = c.kind
            made.append(plain)  # type: ignore[arg-type]
    return made


def _names(dataset_id: str, version: str) -> dict[str, str]:
    stem = f"{dataset_id}_v{version}"
    return {"manifest": f"{stem}_manifest.json", "provenance": f"{stem}_provenance.json",
            "bundle": f"{stem}_source.tar.gz", "journal": f"{stem}_journal.json"}


def plan_lines(rcp: recipes.Recipe, targets: list[Target], build_dir: Path) -> list[str]:
    """The dry-run plan: what would go where. Reads only local files; touches nothing."""
    names = _names(rcp.id, rcp.version)
    files = [rcp.artifact_name(o) for o in rcp.outputs]
    if (rcp.data.get("distribution") or {}).get("torrent", True):
        files += [f"{f}.torrent" for f in files]
    files += [names["manifest"], names["provenance"], names["bundle"]]
    lines = [f"release {rcp.id} v{rcp.version} (tag {rcp.id}/v{rcp.version})",
             f"build: {build_dir}" + ("" if (build_dir / "manifest.json").is_file()
                                      else f" (missing: build it first with `d4c build {rcp.id} --check`)")]
    for t in targets:
        lines.append(f"target {t.name} ({t.kind}, retain {t.retain}"
                     + (", source mirror)" if t.source_mirror else ")"))
        for f in files:
            key = t.key_for(rcp.id, rcp.version, f)
            lines.append(f"  upload {key} -> {t.public_url(key)}")
        for s in rcp.sources if t.source_mirror else ():
            lines.append(f"  source {s.name} -> {source_key(s.sha256)}")
        if t.retain == "latest":
            lines.append(f"  then delete older versions of {rcp.id}")
    lines.append(f"record: releases/{rcp.id}/{rcp.version}.json")
    return lines


def release(dataset_id: str, *, targets_file: Path | None = None, dry_run: bool = False,
            on_side_effect: SideEffect = _noop, echo: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Run (or resume) the release of `dataset_id`; return the release record."""
    root = paths.repo_root()
    rcp = recipes.load_id(dataset_id, root)
    cfg = cfgmod.load(targets_file, root)
    build_dir = build_dir_for(root, rcp)
    if dry_run:
        notes: list[str] = []
        planned = select_targets(rcp, cfg, notes)
        for line in [*plan_lines(rcp, planned, build_dir), *notes]:
            echo(line)
        return None
    targets = select_targets(rcp, cfg)  # every credential checked before any side effect
    ident, version = rcp.id, rcp.version
    names = _names(ident, version)
    effect = on_side_effect

    # 1. the build and the bundle
    manifest_bytes, manifest = read_build(rcp, build_dir)
    stage = paths.state_dir(root) / "release" / ident / f"v{version}"
    files = [ReleaseFile(role="data", name=o["name"], file=o["file"], path=build_dir / o["file"],
                         size=int(o["size"]), sha256=o["sha256"], md5=o["md5"],
                         media_type=o.get("media_type", "application/octet-stream"))
             for o in manifest["outputs"]]
    extra = [("manifest", names["manifest"], manifest_bytes, "application/json")]
    if (build_dir / "provenance.json").is_file():
        extra.append(("provenance", names["provenance"], (build_dir / "provenance.json").read_bytes(),
                      "application/vnd.in-toto+json"))
    for role, fname, raw, mtype in extra:
        files.append(digest_small(role, role, stage / fname, raw, mtype))
    bundle = stage / names["bundle"]
    make_bundle(root, rcp.folder, manifest_bytes, bundle, f"{ident}_v{version}_source",
                int(manifest.get("source_date_epoch") or 0))
    files.append(digest_small("bundle", "bundle", bundle, None, "application/gzip"))
    echo(f"bundle {bundle.name} ({bundle.stat().st_size} bytes)")

    primary = next((t for t in targets if isinstance(t, StateStore)), None)
    journal = Journal(paths.state_dir(root) / "journal" / ident / f"v{version}.json", primary,
                      primary.key_for(ident, version, names["journal"]) if primary else None)
    journal.load()
    record_path = paths.releases_dir(root) / ident / f"{version}.json"
    if journal.get("complete") and record_path.is_file():
        echo(f"{ident} v{version} is already released ({record_path.relative_to(root)})")
        return dict(json.loads(record_path.read_text()))

    def urls_now() -> dict[str, dict[str, str]]:
        return {t.name: {f.file: t.public_url(t.key_for(ident, version, f.file)) for f in files}
                for t in targets}

    ctxs = {t.name: ReleaseContext(dataset_id=ident, version=version, recipe=rcp.data,
                                   manifest=manifest, files=files, urls=urls_now(),
                                   state=journal.target_state(t.name), on_side_effect=effect)
            for t in targets}

    # 2. prepare (draft records, DOI reservation): each hook looks at the world first
    for t in targets:
        _hook(t, "prepare", ctxs[t.name], journal, effect)

    # 3. torrents: deterministic, so simply made again on a rerun
    torrents: list[TorrentInfo] = []
    if (rcp.data.get("distribution") or {}).get("torrent", True):
        for out in manifest["outputs"]:
            # BEP 19 web seeds must be http(s): a local target's file:// URL is no seed.
            seeds = [u for t in targets if t.retain == "all" and cfg.webseeds
                     for u in [t.public_url(t.key_for(ident, version, out["file"]))]
                     if u.startswith(("http://", "https://"))]
            info = make_torrent(build_dir / out["file"], out, stage / f"{out['file']}.torrent",
                                seeds, list(cfg.trackers))
            torrents.append(info)
            files.append(digest_small("torrent", out["name"], info.torrent_path, None,
                                      "application/x-bittorrent"))
    urls = urls_now()
    for ctx in ctxs.values():
        ctx.urls = urls

    # 4. uploads, each verified; raw sources to source mirrors by hash
    sources = [dict(s) for s in manifest.get("sources") or []]
    source_urls: dict[str, dict[str, str]] = {s["sha256"]: {} for s in sources}
    memo = journal.data.setdefault("memo", {})  # per-target working facts, not for the record
    for t in targets:
        if hasattr(t, "recall"):
            t.recall(memo.get(t.name, {}))
        todo = [(t.key_for(ident, version, f.file), f.path, f.sha256, f.md5) for f in files]
        if t.source_mirror:
            for s in sources:
                path = source_file(rcp, s)
                todo.append((source_key(s["sha256"]), path, s["sha256"], digest_file(path).md5))
                source_urls[s["sha256"]][t.name] = t.public_url(source_key(s["sha256"]))
        for key, path, sha, md5 in todo:
            step = f"upload:{t.name}:{key}"
            if t.exists(key, sha):
                log.debug("%s: %s already there", t.name, key)
            else:
                echo(f"upload {t.name}: {key} ({path.stat().st_size} bytes)")
                t.upload(key, path, sha, md5)
                effect(step)
            if not t.verify(key, sha):
                raise D4CError(f"target {t.name!r}: {key} does not match sha256 {sha} after upload",
                               hint="the store damaged or replaced it; rerun to retry")
            journal.mark(step)
        if hasattr(t, "remembered"):
            memo[t.name] = t.remembered()
        journal.save()  # once per target: the journal is a hint, existence checks are the truth
        effect("journal")

    # 5. retain: latest -- only now that every new file is verified everywhere
    for t in targets:
        if t.retain == "latest":
            removed = t.delete_older_versions(ident, version)
            if removed:
                echo(f"cleanup {t.name}: removed {len(removed)} object(s) of older versions")
                effect(f"cleanup {t.name}")

    # 6. finalize (publish); released_at is fixed once so a rerun writes the same record
    if not journal.get("released_at"):
        journal.put("released_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for t in targets:
        ctxs[t.name].state = journal.target_state(t.name)
        _hook(t, "finalize", ctxs[t.name], journal, effect)

    # 7. the record, then the catalog
    for s in sources:
        s["urls"] = source_urls.get(s["sha256"], {})
    rec = build_record(
        dataset_id=ident, version=version, released_at=str(journal.get("released_at")),
        manifest=manifest, recipe=rcp.data, files=files, urls=urls, torrents=torrents,
        sources=[{k: s.get(k) for k in ("name", "sha256", "size", "urls")} for s in sources],
        facts={t.name: journal.target_state(t.name) for t in targets})
    if write_record(record_path, rec, root):
        effect("record")
    echo(f"record {record_path.relative_to(root)}")
    update_catalog(rec, cfg, targets, root, echo)
    journal.put("complete", True)
    journal.save()
    return rec


def _hook(t: Target, which: str, ctx: ReleaseContext, journal: Journal, effect: SideEffect) -> None:
    """Run a lifecycle hook; journal its facts when they are new."""
    if getattr(type(t), which) is getattr(BaseTarget, which, None):
        return  # the no-op default: nothing to run, nothing to record
    facts = getattr(t, which)(ctx)
    effect(f"{which} {t.name}")
    if any(journal.target_state(t.name).get(k) != v for k, v in facts.items()):
        journal.set_target_state(t.name, facts)
        journal.save()
        effect("journal")


def update_catalog(rec: dict[str, Any], cfg: cfgmod.TargetsConfig, targets: list[Target],
                   root: Path, echo: Callable[[str], None]) -> None:
    """Append the record to the catalog (a local file, or an s3:// object of a configured target)."""
    dest = cfg.catalog or str(paths.state_dir(root) / "catalog" / "catalog.parquet")
    client = None
    if dest.startswith("s3://"):
        # Use the matching s3 target's client, so its endpoint and credentials apply.
        bucket = dest[len("s3://"):].split("/", 1)[0]
        client = next((getattr(t, "client", None) for t in targets
                       if getattr(t, "kind", "") == "s3" and getattr(t, "bucket", None) == bucket), None)
    append_record(rec, dest, s3_client=client)
    echo(f"catalog {dest}")
