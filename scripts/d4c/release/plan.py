"""The release plan: every action `d4c release` would take, and whether it can succeed.

`plan()` only reads. It resolves the targets config, asks every selected target for
every credential it needs (no network: an unset variable is named in one line), reads
the build, then proves each target reachable and writable with a read (local: the
folder is writable; s3: HEAD of the bucket; zenodo: the user's records; github: GET of
the repository; internet-archive: IA-S3 `GET /` with the keys), loads the journal (from
`journal.target` when the config names one, else this machine's), checks where the catalog
goes (`d4c.release.locations`), and lists each action with what is already there. `execute()`
(`d4c.release.orchestrate`) refuses a plan with any problem, so nothing is written
anywhere (no draft, no DOI, no upload, no record) before the whole plan is possible.
"""
from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from d4c import canonical, paths
from d4c import recipe as recipes
from d4c.copies import MIRRORS_FILE, mirrors_doc
from d4c.digest import digest_file
from d4c.errors import D4CError
from d4c.release import config as cfgmod
from d4c.release import locations
from d4c.release.bundle import bundle_bytes, bundle_readme
from d4c.release.files import build_dir_for, describe_bytes, read_build, source_file
from d4c.release.journal import Journal
from d4c.release.released import against_record
from d4c.release.targets import (
    BaseTarget,
    ReleaseContext,
    ReleaseFile,
    Target,
    make_target,
)
from d4c.release.targets.base import source_file_name


@dataclass(frozen=True)
class Action:
    """One step of the release; `step` is its key in the journal."""

    step: str
    op: str  # prepare | torrent | upload | cleanup | finalize | record | catalog
    target: str = ""
    key: str = ""
    file: str = ""  # the file as published (upload), or what the step writes
    size: int | None = None  # None: made during the run (torrents), or no build yet
    sha256: str | None = None
    url: str = ""
    exists: str = ""  # what is there now: present | absent | unknown | a note


@dataclass
class Plan:
    recipe: recipes.Recipe
    config: cfgmod.TargetsConfig
    root: Path
    build_dir: Path
    stage: Path  # where execute() writes the small release files and the torrents
    targets: list[Target] = field(default_factory=list)
    journal: Journal | None = None
    manifest_bytes: bytes = b""
    manifest: dict[str, Any] = field(default_factory=dict)
    files: list[ReleaseFile] = field(default_factory=list)  # torrents join during the run
    # The raw sources as files of a service's deposit (Zenodo, IA, GitHub with source_mirror)
    sources: list[ReleaseFile] = field(default_factory=list)
    staged: dict[str, bytes] = field(default_factory=dict)  # file name -> bytes for the stage
    actions: list[Action] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # target -> what its probe saw
    problems: list[D4CError] = field(default_factory=list)
    released: bool = False  # the version has a release record (and this build is its bytes)
    stores: dict[str, Target | None] = field(default_factory=dict)  # journal/catalog-only targets
    catalog_place: locations.CatalogPlace | None = None

    @property
    def names(self) -> dict[str, str]:
        stem = f"{self.recipe.id}_v{self.recipe.version}"
        return {"manifest": f"{stem}_manifest.json", "provenance": f"{stem}_provenance.json",
                "bundle": f"{stem}_source.tar.gz"}

    @property
    def torrents(self) -> bool:
        return bool((self.recipe.data.get("distribution") or {}).get("torrent", True))

    @property
    def record_path(self) -> Path:
        return paths.releases_dir(self.root) / self.recipe.id / f"{self.recipe.version}.json"

    @property
    def catalog(self) -> str:
        if self.catalog_place is not None:
            return self.catalog_place.dest
        return self.config.catalog or str(paths.state_dir(self.root) / "catalog" / "catalog.parquet")

    def of(self, op: str, target: str | None = None) -> list[Action]:
        return [a for a in self.actions if a.op == op and target in (None, a.target)]

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)

    def error(self) -> D4CError:
        """The one error a run that cannot succeed stops with, before any write."""
        if len(self.problems) == 1:
            return self.problems[0]
        return D4CError(f"{len(self.problems)} problems stop the release: "
                        + "; ".join(p.line() for p in self.problems),
                        hint="fix them all, then rerun; `d4c release --dry-run` shows the plan")

    def to_dict(self) -> dict[str, Any]:
        rcp = self.recipe
        return {"id": rcp.id, "version": rcp.version, "tag": f"{rcp.id}/v{rcp.version}",
                "build": str(self.build_dir), "possible": not self.problems,
                "journal": self._journal_place(),
                "problems": [p.line() for p in self.problems],
                "targets": [{"name": t.name, "kind": t.kind, "retain": t.retain,
                             "source_mirror": t.source_mirror, "notes": self.notes.get(t.name, [])}
                            for t in self.targets],
                "actions": [asdict(a) for a in self.actions]}

    def _journal_place(self) -> dict[str, str | None]:
        """Where the run keeps its journal: always on this machine, and on journal.target's key."""
        j = self.journal
        if j is None:  # plan() sets it before anything reads it
            return {"target": None, "key": None, "local": None}
        primary = j.primary.name if j.primary is not None else None
        return {"target": primary, "key": j.key if primary else None, "local": str(j.local)}

    def lines(self) -> list[str]:
        """The plan as text: what would go where, what is there, what stops it."""
        rcp = self.recipe
        built = (self.build_dir / "manifest.json").is_file()
        out = [f"release {rcp.id} v{rcp.version} (tag {rcp.id}/v{rcp.version})",
               f"build: {self.build_dir}" + ("" if built else
                                             f" (missing: build it first with `d4c build {rcp.id} --check`)")]
        j = self._journal_place()
        out.append(f"journal: {j['target']}:{j['key']}, and {j['local']}" if j["target"] else
                   f"journal: {j['local']} (this machine only: "
                   + ("see blocked:)" if self.config.journal_target else
                      "set journal.target in the targets config to keep it on a target)"))
        if self.released:
            out.append(f"released: {self.record_path.relative_to(self.root)} exists; a run with a "
                       "complete journal names the checks and writes nothing")
        for t in self.targets:
            out.append(f"target {t.name} ({t.kind}, retain {t.retain}"
                       + (", source mirror)" if t.source_mirror else ")"))
            out += [f"  found: {n}" for n in self.notes.get(t.name, [])]
            out += [f"  {_line(a)}" for a in self.actions if a.target == t.name]
        out += [_line(a) for a in self.actions if not a.target]
        out += [f"blocked: {p.line()}" for p in self.problems]
        return out


def _line(a: Action) -> str:
    size = "" if a.size is None else f" ({a.size} bytes)"
    where = f" -> {a.url}" if a.url else ""
    there = f" [{a.exists}]" if a.exists else ""
    if a.op == "upload":
        return f"upload {a.key}{size}{where}{there}"
    if a.op == "cleanup":
        return f"then delete older versions of {a.key}"
    return f"{a.op}: {a.file or a.target}{where}{there}"


def plan(dataset_id: str, targets_file: Path | None = None, root: Path | None = None) -> Plan:
    """Everything the release would do, checked; reads only (see the module docstring)."""
    root = root or paths.repo_root()
    rcp = recipes.load_id(dataset_id, root)
    p = Plan(recipe=rcp, config=cfgmod.load(targets_file, root), root=root,
             build_dir=build_dir_for(root, rcp),
             stage=paths.state_dir(root) / "release" / rcp.id / f"v{rcp.version}")
    p.targets = _targets(p)
    unset = {t.name: t.missing_credentials() for t in p.targets}
    p.problems += [e for errs in unset.values() for e in errs]
    _read_build(p)
    p.released, problem = against_record(rcp.id, rcp.version, p.build_dir, p.manifest, p.record_path, root)
    p.problems += [problem] if problem else []
    ready = [t for t in p.targets if not unset[t.name]]
    p.journal = locations.journal(p)  # journal.target from the config, else this machine only
    primary = p.journal.primary
    if primary is None or primary not in p.targets:
        _load_journal(p)  # local only, or a journal-only target that store() probed
    p.catalog_place = locations.catalog(p)
    probed = _probe(p, sorted(ready, key=lambda t: t is not primary))
    p.actions = _actions(p, probed)
    return p


def _load_journal(p: Plan) -> None:
    assert p.journal is not None
    try:
        p.journal.load()
    except D4CError as exc:
        p.problems.append(exc)
        return
    steps = p.journal.data.get("steps") or {}
    if steps and p.journal.primary is not None:
        p.notes.setdefault(p.journal.primary.name, []).append(
            f"journal {p.journal.where}: {len(steps)} step(s) done")


def _targets(p: Plan) -> list[Target]:
    """The recipe's targets, made (making one reads its config and environment, nothing else)."""
    rcp, cfg = p.recipe, p.config
    wanted = (rcp.data.get("distribution") or {}).get("targets", "all")
    if wanted != "all":
        unknown = sorted(set(wanted) - {c.name for c in cfg.targets})
        if unknown:
            raise D4CError(f"{rcp.path}: distribution.targets names unknown target {unknown[0]!r}",
                           hint="add it to the targets config or fix the name")
    configs = [c for c in cfg.targets if wanted == "all" or c.name in wanted]
    if not configs:
        raise D4CError(f"{rcp.path}: no configured target matches distribution.targets")
    return [make_target(c) for c in configs]


def _read_build(p: Plan) -> None:
    """The build's files and the small release files, described from their bytes."""
    rcp, names = p.recipe, p.names
    try:
        p.manifest_bytes, p.manifest = read_build(rcp, p.build_dir)
    except D4CError as exc:
        p.problems.append(exc)
        return
    p.files = [ReleaseFile(role="data", name=o["name"], file=o["file"], path=p.build_dir / o["file"],
                           size=int(o["size"]), sha256=o["sha256"], md5=o["md5"],
                           media_type=o.get("media_type", "application/octet-stream"))
               for o in p.manifest["outputs"]]
    p.staged[names["manifest"]] = p.manifest_bytes
    if (p.build_dir / "provenance.json").is_file():
        p.staged[names["provenance"]] = (p.build_dir / "provenance.json").read_bytes()
    p.staged[names["bundle"]], _ = bundle_bytes(p.root, rcp.folder, p.manifest_bytes,
                                                f"{rcp.id}_v{rcp.version}_source",
                                                int(p.manifest.get("source_date_epoch") or 0),
                                                extra=_bundle_guide(p))
    for role in ("manifest", "provenance", "bundle"):
        if names[role] in p.staged:
            p.files.append(describe_bytes(role, p.stage / names[role], p.staged[names[role]]))
    if any(_deposits_sources(t) for t in p.targets):
        p.sources = _source_files(p)


def _deposits_sources(t: Target) -> bool:
    return t.source_mirror and bool(getattr(t, "SOURCES_IN_VERSION", False))


def _source_files(p: Plan) -> list[ReleaseFile]:
    """The raw sources as files of a service's deposit: read (fetched if need be) to know
    their md5, which those services check; a source that cannot be had is a plan problem."""
    out = []
    for s in p.manifest.get("sources") or []:
        try:
            path = source_file(p.recipe, s)
        except D4CError as exc:
            p.problems.append(exc)
            continue
        d = digest_file(path)
        out.append(ReleaseFile(role="source", name=str(s["name"]), file=source_file_name(s["sha256"]),
                               path=path, size=d.size, sha256=d.sha256, md5=d.md5,
                               media_type="application/octet-stream"))
    return out


def target_files(p: Plan, t: Target) -> list[ReleaseFile]:
    """What one target's deposit holds: every release file (the plan's own list, which the
    torrents join), plus the raw sources for a service that mirrors them."""
    return [*p.files, *p.sources] if _deposits_sources(t) else p.files


def _bundle_guide(p: Plan) -> dict[str, bytes]:
    """The bundle's README.md and mirrors.json: where every source and file will be, as far
    as the config alone says. A service target's URLs (Zenodo's record, a GitHub release)
    come from its prepare step and are left out, so a rerun makes the same bundle; the
    release record lists them."""
    sources = list(p.manifest.get("sources") or [])
    fixed = [t for t in p.targets if getattr(t, "URLS_FROM_CONFIG", True)]
    held = {s["sha256"]: {t.name: t.public_url(t.source_key_for(p.recipe.id, p.recipe.version, s["sha256"]))
                          for t in fixed if t.source_mirror} for s in sources}
    files = [o["file"] for o in p.manifest["outputs"]] + [p.names[r] for r in ("manifest", "bundle")]
    urls = {f: {t.name: t.public_url(t.key_for(p.recipe.id, p.recipe.version, f)) for t in fixed}
            for f in files}
    lookups = {t.name: found for t in p.targets if (found := t.lookup()) is not None}
    doc = mirrors_doc(sources, held, urls, lookups)
    return {MIRRORS_FILE: canonical.encode(doc),
            "README.md": bundle_readme(p.recipe.id, p.recipe.version, doc).encode()}


def context(p: Plan, t: Target, journal: Journal | None) -> ReleaseContext:
    urls = {u.name: {f.file: u.public_url(u.key_for(p.recipe.id, p.recipe.version, f.file))
                     for f in p.files} for u in p.targets}
    return ReleaseContext(dataset_id=p.recipe.id, version=p.recipe.version, recipe=p.recipe.data,
                          manifest=p.manifest, files=target_files(p, t), urls=urls,
                          state=journal.target_state(t.name) if journal else {})


def _probe(p: Plan, ready: list[Target]) -> list[str]:
    """Probe each target whose credentials are all set (the primary first, then the
    journal it holds gives the others their hints); the names of those that passed."""
    passed: list[str] = []
    for t in ready:
        try:
            p.notes[t.name] = t.probe(context(p, t, p.journal))
            if p.journal is not None and t is p.journal.primary:
                _load_journal(p)
            passed.append(t.name)
        except D4CError as exc:
            p.problems.append(exc)
    return passed


def _has_hook(t: Target, which: str) -> bool:
    return getattr(type(t), which) is not getattr(BaseTarget, which, None)


def _actions(p: Plan, probed: list[str]) -> list[Action]:
    rcp = p.recipe
    out = [Action(f"prepare:{t.name}", "prepare", t.name) for t in p.targets if _has_hook(t, "prepare")]
    data = [f for f in p.files if f.role == "data"] or [
        ReleaseFile("data", o.name, rcp.artifact_name(o), p.build_dir / rcp.artifact_name(o), 0, "", "", "")
        for o in rcp.outputs]  # no build yet: the files the recipe promises
    torrents = [f"{f.file}.torrent" for f in data] if p.torrents else []
    out += [Action(f"torrent:{name}", "torrent", file=name, exists="made after prepare (its web seeds "
                   "name the prepared URLs)") for name in torrents]
    for t in p.targets:
        out += _uploads(p, t, data, torrents, t.name in probed)
    out += [Action(f"cleanup:{t.name}", "cleanup", t.name, key=rcp.id) for t in p.targets
            if t.retain == "latest"]
    out += [Action(f"finalize:{t.name}", "finalize", t.name) for t in p.targets if _has_hook(t, "finalize")]
    record = p.record_path
    out.append(Action("record", "record", file=str(record.relative_to(p.root)),
                      exists="present" if record.is_file() else "absent"))
    place = p.catalog_place
    out.append(Action("catalog", "catalog", file=p.catalog, url=place.url or "" if place else ""))
    return out


def _uploads(p: Plan, t: Target, data: list[ReleaseFile], torrents: list[str],
             probed: bool) -> list[Action]:
    """Each file, then each raw source on a source mirror, with what the target holds now."""
    ident, version = p.recipe.id, p.recipe.version
    rows: list[tuple[str, str, int | None, str | None]] = [
        (t.key_for(ident, version, f.file), f.file, f.size or None, f.sha256 or None)
        for f in data + [f for f in p.files if f.role != "data"]]
    rows += [(t.key_for(ident, version, name), name, None, None) for name in torrents]
    if t.source_mirror:
        rows += [(t.source_key_for(ident, version, s["sha256"]), str(s.get("name")), s.get("size"),
                  s["sha256"]) for s in p.manifest.get("sources") or []]
    shared = {t.source_key(s["sha256"]) for s in p.manifest.get("sources") or []
              if t.source_mirror and not _deposits_sources(t)}  # <prefix>/<aa>/<sha256>

    def folder(key: str) -> str:  # the one listing a key is decided by
        return posixpath.dirname(posixpath.dirname(key) if key in shared else key) + "/"
    looks = _looks(t, [(key, sha, folder(key)) for key, _, _, sha in rows if probed and sha])
    out = []
    for key, file, size, sha in rows:
        there = "unknown"
        if probed and sha:
            found = looks[key]
            if isinstance(found, D4CError):
                p.problems.append(found)
            there = "conflict" if isinstance(found, D4CError) else found
        elif torrents and file in torrents:
            there = "made during the run"
        out.append(Action(f"upload:{t.name}:{key}", "upload", t.name, key=key, file=file, size=size,
                          sha256=sha, url=t.public_url(key), exists=there))
    return out


def _looks(t: Target, wanted: list[tuple[str, str, str]]) -> dict[str, str | D4CError]:
    """What `t` holds at each (key, sha256, folder), reading only. A target that lists (s3)
    first says which keys are absent, a page per folder instead of a HEAD per key (an absent
    key then meets the conditional create, which is the race-safe look); every key listed,
    or left undecided, is looked at (HEAD: our sha256 or a conflict), `t.upload_slots` at once."""
    listed: dict[str, bool] = {}
    if (lister := getattr(t, "listed", None)) is not None:
        folders: dict[str, list[str]] = {}
        for key, _, folder in wanted:
            folders.setdefault(folder, []).append(key)
        for folder, keys in folders.items():
            listed.update(lister(folder, keys))
    out: dict[str, str | D4CError] = {key: "absent" for key, _, _ in wanted if listed.get(key) is False}

    def one(item: tuple[str, str]) -> str | D4CError:
        try:
            return t.look(*item)
        except D4CError as exc:
            return exc
    rest = [(key, sha) for key, sha, _ in wanted if key not in out]
    with ThreadPoolExecutor(max(1, t.upload_slots), thread_name_prefix=f"look-{t.name}") as pool:
        out.update(zip((key for key, _ in rest), pool.map(one, rest)))
    return out
