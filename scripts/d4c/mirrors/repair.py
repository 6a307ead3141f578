"""`d4c mirrors repair`: put a missing or corrupt copy back from a copy that passed.

The latest health file says which copies failed. Each one is mapped to the target of the
targets config that holds it (by its alternate's name, or, for the main href, by the URL
its layout gives), and repaired through the same plug-ins as the release (`look`, then
the target's public `replace`, which writes and verifies) with a journal like the release's. Like the release it is a plan,
then its execution: the plan only reads (credentials, a probe of each target, what each
key holds now, a good copy for each file), and nothing is written anywhere unless every
repair is possible; the execution then fetches every file it needs from a copy that
passed, checking the sha256 of every byte, before the first write.

Only the kinds that can replace a damaged object (`REPLACES`: local, s3) are repaired: a
service's deposit (a published Zenodo record, an Internet Archive item, a GitHub release)
is not rewritten in place, so such a copy is one line with the kind's `REPLACE_ADVICE`.

The catalog is untrusted: what repair never writes whatever it says (another release's good
copy, a takedown, a key two items claim, a raw source only a foreign version lists) is
d4c.mirrors.repair_guard's, each one `left:` line that does not stop the rest of the plan.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from d4c import paths
from d4c.errors import D4CError
from d4c.mirrors import health
from d4c.mirrors import repair_guard as guard
from d4c.mirrors.inventory import FETCHABLE
from d4c.release import config as tconfig
from d4c.release import locations
from d4c.release.journal import Journal
from d4c.release.targets import ReleaseContext, StateStore, Target, make_target

STORES = ("local", "s3")  # kinds whose URLs the config fixes: an unnamed main href is looked for there
REPAIRABLE = ("missing", "corrupt")
JOURNAL_ID = "mirrors-repair"  # the {id} of the repair journal's key
Echo = Callable[[str], None]


@dataclass(frozen=True)
class Repair:
    """One copy to put back; `step` is its key in the journal."""

    step: str
    target: str
    key: str
    file: str
    sha256: str
    size: int
    href: str  # the broken copy
    status: str  # its verdict in the health file: missing | corrupt | refused (a 403 over an absent key)
    now: str  # what the key holds now: absent | other bytes
    sources: tuple[str, ...]  # copies that passed, tried in this order
    item: str = ""  # the catalog item whose row asked for it
    row: tuple[tuple[str, Any], ...] = ()  # its health row's collection, version, role, file, sha256


@dataclass
class RepairPlan:
    health: Path
    repairs: list[Repair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # copies left as they are, one line each
    problems: list[D4CError] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=dict)
    journal: Journal | None = None

    def error(self) -> D4CError:
        if len(self.problems) == 1:
            return self.problems[0]
        return D4CError(f"{len(self.problems)} problems stop the repair: "
                        + "; ".join(p.line() for p in self.problems),
                        hint="fix them all, then rerun; `d4c mirrors repair --dry-run` shows the plan")

    def lines(self) -> list[str]:
        out = [f"repair plan from {self.health}: {len(self.repairs)} copies to repair"]
        for r in self.repairs:
            out.append(f"repair {r.target}: {r.key} ({r.file}, {r.status}, now {r.now}) "
                       f"from {r.sources[0] if r.sources else 'no good copy'}")
        out += [f"left: {n}" for n in self.notes]
        out += [f"blocked: {p.line()}" for p in self.problems]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"health": str(self.health), "possible": not self.problems,
                "repairs": [asdict(r) for r in self.repairs], "notes": list(self.notes),
                "problems": [p.line() for p in self.problems]}


@dataclass
class _Copy:
    row: dict[str, Any]
    status: str


def _copies(rows: list[dict[str, Any]]) -> list[_Copy]:
    """One entry per copy in the health file, with its verdict, in a stable order."""
    first: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for r in rows:
        if r["item_id"] and r["href"] and r["tier"] >= 1 and r["check"] not in health.NOT_COPIES:
            first.setdefault((r["item_id"], r["asset"], r["mirror"], r["href"]), r)
    verdict = health.verdicts(rows)
    return [_Copy(first[k], verdict[k]) for k in sorted(first) if k in verdict]


def _fetchable(href: str) -> bool:
    return href.startswith(FETCHABLE)


class _Targets:
    """The config's targets, made once each, found by name or by the URL of a file."""

    def __init__(self, cfg: tconfig.TargetsConfig) -> None:
        self.cfg = cfg
        self.made: dict[str, Target] = {}

    def get(self, name: str) -> Target:
        if name not in self.made:
            self.made[name] = make_target(self.cfg.config_of(name))
        return self.made[name]

    def names(self) -> list[str]:
        return [t.name for t in self.cfg.targets]

    def find(self, c: _Copy) -> tuple[Target | None, str]:
        """The target holding this copy and its key there, or (None, why not)."""
        r = c.row
        name = str(r["mirror"])
        named = [name] if name in self.names() else [
            n for n in self.names() if self.cfg.config_of(n).kind in STORES]
        for n in named:
            t = self.get(n)
            key = (t.source_key_for(str(r["collection"]), str(r["version"]), str(r["sha256"]))
                   if r["role"] == health.SOURCE_ROLE else
                   t.key_for(str(r["collection"]), str(r["version"]), str(r["file"])))
            if not t.REPLACES or r["href"] in (t.public_url(key), t.storage_uri(key)):
                return t, key
            if n == name:
                return None, (f"target {n!r} keeps {r['file']} at {t.public_url(key)}, not at {r['href']}: "
                              "the targets config does not match the release; pass the config it was released with")
        return None, (f"no target of the targets config holds {r['href']} (mirror {r['mirror']}): "
                      "repair it by hand, or pass the config it was released with")


def plan_repair(health_dir: Path, targets_file: Path | None) -> RepairPlan:
    """Read only: which copies to repair, on which target, from which good copy."""
    latest = health.latest(health_dir)
    if latest is None:
        raise D4CError(f"no health file in {health_dir}", hint="run `d4c mirrors check` first")
    p = RepairPlan(latest)
    try:
        rows = health.read(latest)
        copies = _copies(rows)
    except (pa.ArrowException, KeyError, TypeError, OSError):  # a file anyone may have edited
        raise D4CError(f"{latest} is not a health file d4c wrote",
                       hint="remove it, or rerun `d4c mirrors check` to write that day's again") from None
    good = _good(rows, copies)
    targets = _Targets(tconfig.load(targets_file))
    trust = _Trust(guard.retained(rows), *_released_here(targets, copies))
    # a raw source shared by versions is planned from a version released here first
    for c in sorted(copies, key=lambda c: c.row["item_id"] not in trust.bundled):
        _plan_copy(p, targets, c, good.get(_same_file(c.row), []), trust)
    _check_targets(p)
    p.repairs = _unclaimed(p, [c.row for c in copies])
    p.repairs = [r for r in (_look(p, r) for r in p.repairs) if r is not None]
    p.journal = _journal(p, targets, latest, copies)
    return p


def _same_file(r: dict[str, Any]) -> tuple[str, str]:
    """Copies of one file: an asset of one version, or a raw source by its sha256 (shared by
    every version that read it, content-addressed on the stores)."""
    return ("sha256", str(r["sha256"])) if r["role"] == health.SOURCE_ROLE else (r["item_id"], r["asset"])


def _good(rows: list[dict[str, Any]], copies: list[_Copy]) -> dict[tuple[str, str], list[str]]:
    """The copies that passed, per file; for a raw source, then its upstream URL (an `upstream`
    row that answered: the fetch checks its sha256, so a changed upstream is never written)."""
    good: dict[tuple[str, str], list[str]] = {}
    for c in copies:
        if c.status == "ok" and _fetchable(str(c.row["href"])):
            good.setdefault(_same_file(c.row), []).append(str(c.row["href"]))
    for r in sorted(rows, key=lambda r: str(r["href"] or "")):
        if r["check"] == "upstream" and r["status"] in ("ok", "skipped") and r["sha256"] and \
                str(r["href"] or "").startswith(("https://", "http://")):
            urls = good.setdefault(("sha256", str(r["sha256"])), [])
            if r["href"] not in urls:
                urls.append(str(r["href"]))
    return good


@dataclass(frozen=True)
class _Trust:
    kept: dict[str, str]  # item -> its retention or takedown, never restored
    bundled: set[str]  # items whose lists of raw sources repair trusts
    stored: set[str]  # items released on a store of the config


def _released_here(targets: _Targets, copies: list[_Copy]) -> tuple[set[str], set[str]]:
    """Items every source bundle of which passed on a local or s3 target of the config at
    the key its layout gives for that item (their lists of raw sources are trusted: a hostile
    item's bundle is on no store of ours), and items any file of which passed there."""
    bundles: dict[str, dict[str, bool]] = {}
    stored = set()
    for c in copies:
        if c.row["role"] == health.SOURCE_ROLE:
            continue
        t, _ = targets.find(c) if c.status == "ok" else (None, "")
        here = bool(t and t.REPLACES)
        if here:
            stored.add(str(c.row["item_id"]))
        if c.row["role"] == guard.BUNDLE_ROLE:
            done = bundles.setdefault(str(c.row["item_id"]), {})
            done[str(c.row["asset"])] = done.get(str(c.row["asset"]), False) or here
    return {item for item, ok in bundles.items() if ok and all(ok.values())}, stored


def _refusal(r: dict[str, Any], where: str, kept: dict[str, str]) -> str | None:
    """Why this copy is never repaired, before any target is asked (repair_guard)."""
    if not guard.well_formed(str(r["sha256"] or "")):
        return (f"{where}: item {r['item_id']} gives sha256 {str(r['sha256'])!r}, not 64 lowercase "
                "hex: not repaired; fix the asset's file:checksum in the catalog")
    if r["item_id"] in kept:
        return (f"{where}: item {r['item_id']} records {kept[r['item_id']]}: not restored (its "
                "copies may be gone on purpose, a takedown or the end of its retention); put it "
                "back by hand if it must stay, and drop the record from the recipe")
    return None


def _plan_copy(p: RepairPlan, targets: _Targets, c: _Copy, sources: list[str], trust: _Trust) -> None:
    r = c.row
    where = f"{r['file']} on mirror {r['mirror']} ({r['href']})"
    if c.status in (*REPAIRABLE, "refused") and (why := _refusal(r, where, trust.kept)):
        p.notes.append(why)
        return
    if c.status == "unreachable":
        p.notes.append(f"{where}: unreachable; nothing to repair until it answers, then rerun "
                       "`d4c mirrors check`")
        return
    if c.status == "changed":
        p.notes.append(f"{where}: its ETag changed and it was not re-hashed; run "
                       "`d4c mirrors check --tier 3` to know whether it needs a repair")
        return
    if c.status not in (*REPAIRABLE, "refused"):
        return
    t, key = targets.find(c)
    if c.status == "refused" and (t is None or not t.REPLACES or not sources):
        p.notes.append(f"{where}: refused; fix the mirror's read policy or permissions (docs/mirrors.md), "
                       "then rerun `d4c mirrors check`")
        return  # a store we write is looked at with credentials instead (_look)
    if t is None:
        p.notes.append(f"{where}: {c.status}; {key}")
        return
    if not t.REPLACES:
        p.notes.append(f"{where}: {c.status} on {t.kind} target {t.name!r}, which is not repaired "
                       f"in place: {t.REPLACE_ADVICE}")
        return
    if any(x.step == f"repair:{t.name}:{key}" for x in p.repairs):
        return  # a raw source shared by several versions: one key, one repair
    if (why := _foreign(r, trust)) is not None:
        p.notes.append(f"{where}: {c.status}, but {why}")
        return
    if not sources:
        p.problems.append(D4CError(f"{where} is {c.status} (item {r['item_id']}), and no copy of it "
                                   "passed the last check", hint=_nothing_to_repair_from(r)))
    p.targets[t.name] = t
    p.repairs.append(Repair(f"repair:{t.name}:{key}", t.name, key, str(r["file"]), str(r["sha256"]),
                            int(r["size"] or 0), str(r["href"]), c.status, "unknown", tuple(sources),
                            str(r["item_id"]), tuple((k, r[k]) for k in guard.KEY_FIELDS)))


def _foreign(r: dict[str, Any], trust: _Trust) -> str | None:
    """Why a copy of a version not released on the config's stores is not written there."""
    if r["role"] == health.SOURCE_ROLE and r["item_id"] not in trust.bundled:
        return (f"item {r['item_id']}'s source bundle passed on no local or s3 target of this "
                "config, so its list of raw sources is not trusted: not restored; put the file "
                "back by hand if it is yours")
    if r["role"] != health.SOURCE_ROLE and r["item_id"] not in trust.stored:
        return (f"no file of item {r['item_id']} passed on a local or s3 target of this config (a "
                "version released elsewhere, or lost from every store): not restored there; "
                "release it again with `d4c release`, or put it back by hand")
    return None


def _nothing_to_repair_from(r: dict[str, Any]) -> str:
    if r["role"] == health.SOURCE_ROLE:
        return ("a raw source comes back from another mirror's copy or its upstream: run "
                "`d4c mirrors check --tier 2` (it checks the upstream) and repair again, or put a "
                f"file with sha256 {r['sha256']} there by hand")
    return "nothing to repair it from: rebuild the version with `d4c verify` or restore it from a backup"


def _check_targets(p: RepairPlan) -> None:
    """Every credential set, every target reachable and writable (the release's own probes)."""
    for t in p.targets.values():
        unset = t.missing_credentials()
        p.problems += unset
        if unset:
            continue
        ctx = ReleaseContext(JOURNAL_ID, "0.0.0", {}, {}, [], {}, dry_run=True)
        try:
            t.probe(ctx)
        except D4CError as exc:
            p.problems.append(exc)


def _unclaimed(p: RepairPlan, rows: list[dict[str, Any]]) -> list[Repair]:
    """The repairs no other catalog row contradicts: a key two items fill with different
    sha256s is left with one line naming them (nothing is written there)."""
    keep, by_target = [], {name: guard.claims(t, rows) for name, t in p.targets.items()}
    for r in p.repairs:
        clash = guard.conflict(p.targets[r.target], r.key, r.sha256, r.item,
                               by_target[r.target].get(r.key, {}))
        if clash:
            p.notes.append(clash)
        else:
            keep.append(r)
    return keep


def _look(p: RepairPlan, r: Repair) -> Repair | None:
    """What the key holds now: our bytes (already repaired: dropped), none, or other bytes."""
    t = p.targets[r.target]
    if any(e.message.startswith(f"target {t.name!r}") for e in p.problems):
        return r
    try:
        now = t.look(r.key, r.sha256)
    except D4CError as exc:
        # other bytes there ("exists with ...", or s3's "our sha256 in its metadata but not our
        # bytes (a damaged copy)") are what a repair replaces; any other error is no verdict
        if not any(what in exc.message for what in ("exists with", "(a damaged copy)")):
            p.problems.append(exc)
            return r
        at = [(s, guard.key_of(s, dict(r.row))) for s in p.targets.values() if s is not t]
        other = guard.good_copy_of_other(t, r.key, r.sha256, at) if "exists with" in exc.message else None
        if other is not None:  # some release's good copy: never overwritten
            p.notes.append(guard.refuse_other(t, r.key, r.file, r.sha256, r.item, other))
            return None
        now = "other bytes"
    if now == "present" and r.status == "refused":  # the bytes are there: only the policy is wrong
        p.notes.append(f"{r.file} on target {t.name!r} ({r.key}) holds our bytes but refuses an "
                       "anonymous read: fix its read policy (docs/operators.md), then rerun "
                       "`d4c mirrors check`")
        return None
    if now == "present":
        p.notes.append(f"{r.file} on target {t.name!r} ({r.key}) holds our bytes again: nothing to do")
        return None
    return replace(r, now=now)  # a refused key that is absent: S3 hides a deletion behind 403


def _journal(p: RepairPlan, targets: _Targets, latest: Path, copies: list[_Copy]) -> Journal:
    """On this machine, and on `journal.target` at the config's journal key for this run."""
    date = latest.name[:10]
    local = paths.state_dir() / "journal" / JOURNAL_ID / f"v{date}.json"
    cfg = targets.cfg
    if cfg.journal_target is None:
        return Journal(local, None, None)
    t = targets.get(cfg.journal_target)
    if not isinstance(t, StateStore) or t.missing_credentials():
        return Journal(local, None, None)
    key = cfg.journal_key.format(id=JOURNAL_ID, version=date)
    ids = sorted({str(r.row["collection"]) for r in copies} | {JOURNAL_ID})
    for name in targets.names():  # the release's rule: never inside a public prefix
        other = targets.get(name) if cfg.config_of(name).kind in STORES else None
        if other is not None and other.public and locations._same_store(t, other) and any(
                key.startswith(pre) for ds in ids for pre in locations.public_prefixes(other, ds)):
            p.problems.append(D4CError(f"journal key {key} on target {t.name!r} is inside "
                                       f"{other.name!r}'s public prefix",
                                       hint="set journal.key outside every public prefix"))
            return Journal(local, None, None)
    return Journal(local, t, key)


def _stage(p: RepairPlan, echo: Echo) -> dict[str, tuple[Path, str, str]]:
    """sha256 -> (verified file, md5, the copy it came from); raises before any write."""
    from d4c.digest import digest_file
    from d4c.fetch import get_verified

    folder = paths.state_dir() / "repair"
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str, str]] = {}
    for r in p.repairs:
        if r.sha256 in out:
            continue
        if not guard.well_formed(r.sha256):  # _plan_copy left it; never a path from the catalog
            raise D4CError(f"sha256 {r.sha256!r} of {r.file} is not 64 lowercase hex; nothing was written")
        dest = folder / r.sha256
        got = next((src for src in r.sources if get_verified(src, dest, r.sha256, max_bytes=r.size)), None)
        if got is None:
            raise D4CError(f"no good copy of {r.file} gave its sha256 {r.sha256} (tried "
                           f"{', '.join(r.sources)}); nothing was written",
                           hint="run `d4c mirrors check --tier 3` to see which copies still hold it")
        echo(f"fetched {r.file} from {got} ({r.size} bytes, sha256 verified)")
        out[r.sha256] = (dest, digest_file(dest).md5, got)
    return out


def execute(p: RepairPlan, echo: Echo = print) -> int:
    """Run a possible plan: stage every file, then replace each copy and verify it."""
    if p.problems:
        raise p.error()
    journal = p.journal
    assert journal is not None
    journal.load()
    staged = _stage(p, echo)
    done = journal.data.setdefault("repairs", {})
    for r in p.repairs:
        t = p.targets[r.target]
        path, md5, src = staged[r.sha256]
        t.replace(r.key, path, r.sha256, md5)  # writes, then verifies (or raises)
        journal.mark(r.step)
        done[r.step] = {"from": src, "health": p.health.name, "was": r.status,
                        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        journal.save()
        echo(f"repaired {t.name}: {r.key} ({r.file}, was {r.status}) from {src}")
    for path, _, _ in staged.values():
        path.unlink(missing_ok=True)
    return len(p.repairs)
