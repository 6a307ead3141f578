"""`d4c release`: publish one built version to every target, exactly once, resumable.

Two halves. `d4c.release.plan.plan()` reads only: the targets config, every credential
of every target, the build (made beforehand by `d4c build`, never here: this process
holds the credentials, and a transform is untrusted code), a read on every target to
prove it reachable and writable, the journal, and what each action finds already there.
`execute(plan)` refuses a plan with any problem, then runs its actions in order:
stage the small files -> prepare every target (e.g. reserve the DOI) -> torrents (web
seeds need the prepared URLs; they sit outside the infohash) -> upload + verify every
file on every target, raw sources to source mirrors -> `retain: latest` cleanup (only
after all verified) -> finalize (publish) -> release record -> catalog. Every step still
looks before it acts; the journal, keyed on the plan's steps, records facts in the
primary target so a rerun on any machine resumes.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from d4c import canonical, model
from d4c.atomic import atomic_write
from d4c.catalog.append import append_record
from d4c.digest import md5_file
from d4c.errors import D4CError
from d4c.release import locations, reach, stac_tree
from d4c.release.files import ROLE_MEDIA_TYPES, digest_small, source_file
from d4c.release.journal import Journal
from d4c.release.plan import Action, Plan, context, plan, target_files
from d4c.release.record import build_record, write_record
from d4c.release.targets import ReleaseContext, StateStore, Target
from d4c.release.torrent import TorrentInfo, make_torrent

log = logging.getLogger("d4c.release")
SideEffect = Callable[[str], None]
STORES = ("local", "s3")  # their URLs open right after upload; the services' after finalize
Echo = Callable[[str], None]


def _noop(what: str) -> None:
    return None


def release(dataset_id: str, *, targets_file: Path | None = None, dry_run: bool = False,
            fmt: str = "text", on_side_effect: SideEffect = _noop,
            echo: Echo = print) -> dict[str, Any] | None:
    """Plan the release of `dataset_id`; print the plan (dry run) or execute it."""
    planned = plan(dataset_id, targets_file)
    if dry_run:
        echo(canonical.dumps(planned.to_dict()).rstrip("\n") if fmt == "json"
             else "\n".join(planned.lines()))
        return None
    return execute(planned, on_side_effect, echo)


def execute(p: Plan, effect: SideEffect = _noop, echo: Echo = print) -> dict[str, Any]:
    """Run (or resume) a possible plan; return the release record."""
    if p.problems:
        raise p.error()  # before any write, anywhere
    journal = p.journal
    assert journal is not None
    if journal.get("complete") and p.record_path.is_file():  # done: name the checks, run none
        record = p.record_path.relative_to(p.root)
        config = f" --targets {p.config.source}" if p.config.source else ""
        echo(f"{p.recipe.id} v{p.recipe.version} is already released ({record}); to check its "
             f"copies: `d4c mirrors check{config}` (every copy in the catalog) or "
             f"`d4c verify {record}` (rebuilds it from the mirrors)")
        return model.load_record(p.record_path).doc
    for name, raw in p.staged.items():  # the plan described these bytes; now they exist
        path = p.stage / name
        if not path.is_file() or path.read_bytes() != raw:
            atomic_write(path, data=raw, durable=False)
    echo(f"bundle {p.names['bundle']} ({len(p.staged[p.names['bundle']])} bytes)")
    ctxs = {t.name: context(p, t, journal) for t in p.targets}
    for ctx in ctxs.values():
        ctx.on_side_effect = effect
    for a in p.of("prepare"):
        _hook(p.target(a.target), a, ctxs[a.target], journal, effect)
    torrents = _torrents(p)
    urls = _urls(p)
    for t in p.targets:  # the torrents joined the files
        ctxs[t.name].urls, ctxs[t.name].files = urls, target_files(p, t)
    source_urls: dict[str, dict[str, str]] = {}
    found: dict[str, list[str]] = {}  # target -> URLs of the sources it held before this run
    for t in p.targets:
        _upload(p, t, journal, effect, echo, source_urls, found)
    _reachable(p, urls, source_urls, found, STORES)  # before cleanup and publishing anything
    _cleanup(p, effect, echo)
    if not journal.get("released_at"):  # fixed once, so a rerun writes the same record
        journal.put("released_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for a in p.of("finalize"):
        ctxs[a.target].state = journal.target_state(a.target)
        _hook(p.target(a.target), a, ctxs[a.target], journal, effect)
    _reachable(p, urls, source_urls, found, None)  # the services' URLs open once published
    rec = _record(p, journal, urls, torrents, source_urls, effect, echo)
    update_catalog(rec, p, echo)
    journal.mark("catalog")
    journal.put("complete", True)
    journal.save()
    return rec


def _urls(p: Plan) -> dict[str, dict[str, str]]:
    ident, version = p.recipe.id, p.recipe.version
    return {t.name: {f.file: t.public_url(t.key_for(ident, version, f.file)) for f in p.files}
            for t in p.targets}


def _storage(p: Plan) -> dict[str, dict[str, str]]:
    """target -> file -> s3:// address, for the targets that have one."""
    ident, version = p.recipe.id, p.recipe.version
    out = {t.name: {f.file: uri for f in p.files
                    if (uri := t.storage_uri(t.key_for(ident, version, f.file)))} for t in p.targets}
    return {name: files for name, files in out.items() if files}


def _hook(t: Target, a: Action, ctx: ReleaseContext, journal: Journal, effect: SideEffect) -> None:
    """Run a lifecycle hook (prepare/finalize); journal its facts when they are new."""
    facts = getattr(t, a.op)(ctx)
    effect(f"{a.op} {t.name}")
    journal.mark(a.step)
    if any(journal.target_state(t.name).get(k) != v for k, v in facts.items()):
        journal.set_target_state(t.name, facts)
        journal.save()
        effect("journal")


def _torrents(p: Plan) -> list[TorrentInfo]:
    """One torrent per artifact: deterministic, so simply made again on a rerun."""
    made: list[TorrentInfo] = []
    if not p.torrents:
        return made
    ident, version = p.recipe.id, p.recipe.version
    for out in p.manifest["outputs"]:
        # BEP 19 web seeds must be http(s): a local target's file:// URL is no seed.
        seeds = [u for t in p.targets if t.retain == "all" and t.public and p.config.webseeds
                 for u in [t.public_url(t.key_for(ident, version, out["file"]))]
                 if u.startswith(("http://", "https://"))]
        info = make_torrent(p.build_dir / out["file"], out, p.stage / f"{out['file']}.torrent",
                            seeds, list(p.config.trackers))
        made.append(info)
        p.files.append(digest_small("torrent", out["name"], info.torrent_path, None,
                                    ROLE_MEDIA_TYPES["torrent"]))
    return made


def _upload(p: Plan, t: Target, journal: Journal, effect: SideEffect, echo: Echo,
            source_urls: dict[str, dict[str, str]], found: dict[str, list[str]]) -> None:
    """The plan's uploads to `t`, each looked for first and verified after, up to the
    target's `upload_slots` at once. Workers only talk to the target; this thread alone
    reports side effects and marks the journal, each step only once its file is verified,
    so a crash (here or in a worker) leaves no step marked that was not done."""
    memo = journal.data.setdefault("memo", {})  # per-target working facts, not for the record
    if hasattr(t, "recall"):
        t.recall(memo.get(t.name, {}))
    by_file = {f.file: f for f in p.files}
    sources = {s["sha256"]: s for s in p.manifest.get("sources") or []}
    jobs: list[tuple[Action, Path, str, str | None]] = []
    for a in p.of("upload", t.name):
        f = by_file.get(a.file)
        if f is not None:
            jobs.append((a, f.path, f.sha256, f.md5))
        else:  # a raw source, to a source mirror, by its hash (its md5 is taken in the worker)
            jobs.append((a, source_file(p.recipe, sources[str(a.sha256)]), str(a.sha256), None))
            source_urls.setdefault(str(a.sha256), {})[t.name] = t.public_url(a.key)  # after prepare
    slots, todo = max(1, t.upload_slots), iter(jobs)
    running: dict[Future[bool], tuple[Action, Path]] = {}
    with ThreadPoolExecutor(slots, thread_name_prefix=f"upload-{t.name}") as pool:
        while True:
            # A file starts only here, once a slot is free and every finished one is reported:
            # after a failure or a crash nothing new starts (one slot: exactly the serial order).
            for a, path, sha, md5 in itertools.islice(todo, slots - len(running)):
                running[pool.submit(_put_one, t, a, path, sha, md5)] = (a, path)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for done in sorted(finished, key=lambda f: running[f][0].step):
                a, path = running.pop(done)
                if done.result():  # a worker's error stops the loop; in-flight files finish
                    echo(f"upload {t.name}: {a.key} ({path.stat().st_size} bytes)")
                    effect(a.step)
                elif a.file not in by_file:  # a source this run did not write: reach reads it
                    found.setdefault(t.name, []).append(t.public_url(a.key))
                journal.mark(a.step)
    if hasattr(t, "remembered"):
        memo[t.name] = t.remembered()
    journal.save()  # once per target: the journal is a hint, existence checks are the truth
    effect("journal")


def _put_one(t: Target, a: Action, path: Path, sha: str, md5: str | None) -> bool:
    """Look, upload if absent, verify. True when this call uploaded. The plan looked at every
    key moments ago: one it found present needs only the verify; one it found absent goes
    straight to a target whose upload refuses to replace a key (S3's If-None-Match: a 412
    there is answered by the same look, and verify follows either way)."""
    key, uploaded = a.key, False
    if a.exists == "present" or (a.exists != "absent" or not t.guards_create) and t.exists(key, sha):
        log.debug("%s: %s already there", t.name, key)
    else:
        t.upload(key, path, sha, md5 or md5_file(path))
        uploaded = True
    if not t.verify(key, sha):
        raise D4CError(f"target {t.name!r}: {key} does not match sha256 {sha} after upload",
                       hint="the store damaged or replaced it; rerun to retry")
    return uploaded


def _cleanup(p: Plan, effect: SideEffect, echo: Echo) -> None:
    """retain: latest, only now that every new file is verified everywhere."""
    for a in p.of("cleanup"):
        removed = p.target(a.target).delete_older_versions(p.recipe.id, p.recipe.version)
        if removed:
            echo(f"cleanup {a.target}: removed {len(removed)} object(s) of older versions")
            effect(f"cleanup {a.target}")


def _record(p: Plan, journal: Journal, urls: dict[str, dict[str, str]], torrents: list[TorrentInfo],
            source_urls: dict[str, dict[str, str]], effect: SideEffect, echo: Echo) -> dict[str, Any]:
    sources = [{"name": s.get("name"), "sha256": s.get("sha256"), "size": s.get("size"),
                "urls": source_urls.get(s["sha256"], {})} for s in p.manifest.get("sources") or []]
    rec = build_record(
        dataset_id=p.recipe.id, version=p.recipe.version, released_at=str(journal.get("released_at")),
        manifest=p.manifest, recipe=p.recipe.data, files=p.files, urls=urls, torrents=torrents,
        sources=sources, facts={t.name: journal.target_state(t.name) for t in p.targets},
        retain={t.name: t.retain for t in p.targets}, storage=_storage(p))
    if write_record(p.record_path, rec, p.root):
        effect("record")
    journal.mark("record")
    echo(f"record {p.record_path.relative_to(p.root)}")
    return rec


def _reachable(p: Plan, urls: dict[str, dict[str, str]], source_urls: dict[str, dict[str, str]],
               found: dict[str, list[str]], kinds: tuple[str, ...] | None) -> None:
    """Anonymous reads of every public URL of these targets (`kinds`; None: the others):
    each release file and each source found there, of the sources this run wrote one."""
    chosen = [t for t in p.targets if t.public and (t.kind in kinds if kinds else t.kind not in STORES)]
    problems = reach.check_public({t.name: [*urls[t.name].values(), *found.get(t.name, [])] for t in chosen},
                                  {t.name: [u[t.name] for u in source_urls.values() if t.name in u]
                                   for t in chosen})
    j = p.journal
    if kinds and j is not None and j.primary is not None and j.key is not None:
        leak = reach.check_private(j.primary.name, j.primary.public_url(j.key))
        problems += [leak] if leak else []
    if problems:
        raise problems[0] if len(problems) == 1 else D4CError(
            f"{len(problems)} problems stop the release before its record: "
            + "; ".join(e.line() for e in problems))


def update_catalog(rec: dict[str, Any], p: Plan, echo: Echo) -> None:
    """Append the record to the catalog the plan checked (a local file, or an s3:// object
    written with its owning target's client, so that target's endpoint and credentials apply)."""
    place = p.catalog_place or locations.CatalogPlace(p.catalog)
    append_record(rec, place.dest, s3_client=place.client)
    echo(f"catalog {place.dest}" + (f" ({place.url})" if place.url else ""))
    if isinstance(place.target, StateStore) and place.key is not None:
        stac_tree.publish(place.target, place.key, p.root, echo)
