"""One run of a node: read the catalog and the check-ins, re-verify what it holds, plan
with `d4c.node.policy`, evict and fetch, write the state and the check-in.

Disk: held copies stay within the budget after each run; held copies plus partial
downloads never exceed budget + reserve. A copy evicted to make room for a new one is
deleted after the new one is verified when the reserve allows, else before it starts.
"""
from __future__ import annotations

import fcntl
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from d4c.atomic import atomic_write, publish
from d4c.errors import D4CError
from d4c.node import challenge, checkins, inventory, policy, seed
from d4c.node.config import NodeConfig
from d4c.node.inventory import Entry
from d4c.node.log import open_log
from d4c.node.store import Held, State, Store, sha256_of
from d4c.node.transfer import Allowance, download


@dataclass
class Report:
    plan: policy.Plan
    fetched: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    downloaded: int = 0
    checkin: list[str] = field(default_factory=list)  # where the check-in went
    paths: dict[str, str] = field(default_factory=dict)  # sha256 -> where it is (or goes)


def _iso(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reader(store: Store, state: State) -> challenge.Reader:
    """Pieces of the files this node holds (for its answers, and to check others')."""
    def read(sha: str, start: int, length: int) -> bytes | None:
        h = state.held.get(sha)
        if h is None:
            return None
        with store.path_of(h.relpath).open("rb") as fh:
            fh.seek(start)
            return fh.read(length)
    return read


def _counts(cfg: NodeConfig, cis: list[checkins.Checkin], now: datetime, read: challenge.Reader,
            warn: list[str]) -> tuple[dict[str, float], dict[str, list[str]], set[str]]:
    """Per sha256: other nodes' weighted copies and holders; the known live nodes. A node
    that answers wrong for a file this node holds is not counted at all."""
    others: dict[str, float] = {}
    holders: dict[str, list[str]] = {}
    nodes = {cfg.node_id}
    for ci in cis:
        weight = policy.checkin_weight((now - ci.at).total_seconds() / 86400)
        if ci.node == cfg.node_id or weight == 0:
            continue
        bad = challenge.wrong(ci.node, ci.date, ci.prev, ci.answers, ci.sizes, read)
        if bad:
            warn.append(f"node {ci.node} failed its challenge for {len(bad)} files "
                        f"(e.g. {bad[0][:16]}), not counted")
            continue
        nodes.add(ci.node)
        for sha in ci.held:
            others[sha] = others.get(sha, 0.0) + weight
            holders.setdefault(sha, []).append(ci.node)
    return others, holders, nodes


def candidates(cfg: NodeConfig, entries: list[Entry], state: State, cis: list[checkins.Checkin],
               now: datetime, read: challenge.Reader, warn: list[str]) -> list[policy.Candidate]:
    others, holders, nodes = _counts(cfg, cis, now, read, warn)
    today = now.date()
    out = []
    for e in entries:
        if not cfg.wants_collection(e.collection):
            continue
        held = e.sha256 in state.held
        c = policy.Candidate(e.sha256, e.size, e.mirrors, others.get(e.sha256, 0.0), e.at_risk,
                             e.deprecated, not e.deprecated, held=held)
        goal = policy.goal(c)
        if policy.elsewhere(c) + held < goal:
            since = state.under_since.setdefault(e.sha256, today.isoformat())
            days = (today - date.fromisoformat(since)).days
        else:
            state.under_since.pop(e.sha256, None)
            days = 0
        free = nodes - set(holders.get(e.sha256, ()))  # known nodes not holding it
        rank = policy.rank_among(cfg.node_id, e.sha256, free) if policy.elsewhere(c) < goal else 0
        hrank = policy.rank_among(cfg.node_id, e.sha256, holders.get(e.sha256, [])) if held else 0
        out.append(policy.Candidate(**{**vars(c), "rank": rank, "holder_rank": hrank,
                                       "days_under": days}))
    return out


def verify_held(store: Store, state: State, cfg: NodeConfig, now: datetime, warn: list[str]) -> None:
    """Drop copies that are gone or changed size; re-hash those verified too long ago."""
    for sha, h in sorted(state.held.items()):
        path = store.path_of(h.relpath)
        stale = (now - datetime.fromisoformat(h.verified_at)).days >= cfg.verify_days
        if not path.is_file() or path.stat().st_size != h.size or (stale and sha256_of(path) != sha):
            warn.append(f"{path}: missing or changed on disk, no longer counted")
            store.remove(state, sha)
        elif stale:
            h.verified_at = _iso(now)


def _drops(cfg: NodeConfig, entries: dict[str, Entry], state: State) -> list[tuple[str, str]]:
    """Held copies the catalog no longer names, or whose collection the config denies."""
    out = []
    for sha in sorted(state.held):
        e = entries.get(sha)
        if e is None:
            out.append((sha, "gone from the catalog"))
        elif not cfg.wants_collection(e.collection):
            out.append((sha, "collection not allowed by the config"))
    return out


def _via_torrent(store: Store, state: State, e: Entry, entries: dict[str, Entry],
                 allow: Allowance) -> bool:
    """Fetch `e` into its partial file with aria2c from its torrent (peers and web seeds);
    False when not done. The torrent is the held copy or the cache when there is one, so
    a node fills from peers even when no mirror answers."""
    from d4c.node import torrent

    t = entries.get(e.torrent or "")
    aria2c = torrent.client()
    if t is None or aria2c is None or e.size + t.size > allow.left:
        return False
    tfile = seed.torrent_file(store, state, t, allow)
    if tfile is None:
        return False
    try:
        got, path = torrent.fetch(aria2c, tfile, store.meta / "bt" / e.sha256, e.size, e.sha256)
        if got.status != "ok" or path is None:
            return False
        path.replace(store.partial(e.sha256))
        allow.take(e.size)
        return True
    finally:
        shutil.rmtree(store.meta / "bt", ignore_errors=True)


def _fetch_one(store: Store, state: State, e: Entry, entries: dict[str, Entry], allow: Allowance,
               now: datetime) -> str | None:
    """Download and publish one copy (BitTorrent when a client is there, else HTTP);
    None when done, else why not."""
    dest = store.path_of(e.relpath)
    if dest.exists() and not any(h.relpath == str(e.relpath) for h in state.held.values()):
        dest.unlink()  # a leftover the state does not know (a crash before the state was saved)
    elif dest.exists():
        return f"{e.relpath}: the path is taken by another artifact of the catalog"
    part = store.partial(e.sha256)
    if not _via_torrent(store, state, e, entries, allow):
        got = download(e.hrefs, part, e.size, e.sha256, allow)
        if got.status != "ok":
            return f"{e.relpath}: {got.detail}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    publish(part, dest)
    state.held[e.sha256] = Held(e.sha256, e.size, str(e.relpath), e.item_id, e.asset, _iso(now))
    return None


def _execute(store: Store, state: State, cfg: NodeConfig, plan: policy.Plan,
             entries: dict[str, Entry], allow: Allowance, now: datetime, report: Report) -> None:
    """Evict and fetch as planned; room-making evictions wait for their fetch when they can."""
    waiting: dict[str, list[str]] = {}
    for c, why in plan.evict:
        if why.startswith("room for "):
            waiting.setdefault(why.removeprefix("room for "), []).append(c.sha256)
        else:
            report.evicted.append(f"{state.held[c.sha256].relpath}: {why}")
            store.remove(state, c.sha256)
    cap = cfg.budget + cfg.reserve
    for c, _ in plan.fetch:
        e, victims = entries[c.sha256], waiting.get(c.sha256, [])
        part = store.partial(c.sha256)
        have = part.stat().st_size if part.is_file() else 0
        first = store.held_bytes(state) + store.partial_bytes() + c.size - have > cap
        if first:
            _evict(store, state, victims, f"room for {e.relpath}", report)
        if store.held_bytes(state) + store.partial_bytes() + c.size - have > cap:
            report.failed.append(f"{e.relpath}: no room within budget + reserve")
            continue
        failure = _fetch_one(store, state, e, entries, allow, now)
        if failure and allow.left <= 0:
            report.paused.append(failure)  # the partial waits for tomorrow's allowance
            break
        if failure:
            report.failed.append(failure)
            continue
        report.fetched.append(f"{e.relpath} ({e.size} bytes)")
        if not first:
            _evict(store, state, victims, f"room for {e.relpath}", report)
        store.save(state)  # a crash from here on loses no verified copy


def _evict(store: Store, state: State, shas: list[str], why: str, report: Report) -> None:
    for sha in shas:
        if sha in state.held:
            report.evicted.append(f"{state.held[sha].relpath}: {why}")
            store.remove(state, sha)


def _clean_partials(store: Store, keep: set[str]) -> None:
    folder = store.meta / "partial"
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.name not in keep:
            p.unlink()


def run(cfg: NodeConfig, *, dry: bool = False, max_fetch: int | None = None,
        now: datetime | None = None) -> Report:
    """One sync (or, with `dry`, only the plan: nothing is written or fetched)."""
    store = Store(cfg.data)
    if dry:  # reads only: no lock, so `d4c node plan` works while a sync runs
        return _run(cfg, store, dry, max_fetch, now or datetime.now(UTC))
    store.meta.mkdir(parents=True, exist_ok=True)
    with open(store.meta / "lock", "a") as lock:  # left in place: removing it would race
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise D4CError(f"another sync is running on {cfg.data}",
                           hint="wait for it (a timer or cron started it)") from None
        return _run(cfg, store, dry, max_fetch, now or datetime.now(UTC))


def _run(cfg: NodeConfig, store: Store, dry: bool, max_fetch: int | None, now: datetime) -> Report:
    warn: list[str] = []
    state = store.load()
    found = inventory.load(cfg.catalog, warn)
    entries = {e.sha256: e for e in found}
    log = open_log(cfg.checkins) if cfg.checkins else None
    cis = checkins.read(log, now, warn)
    if not dry:
        verify_held(store, state, cfg, now, warn)
    cands = candidates(cfg, found, state, cis, now, reader(store, state), warn)
    today = now.date().isoformat()
    left = max(0, cfg.bandwidth_per_day - state.downloaded.get(today, 0))
    # The day's allowance is not a cap of the plan: a file larger than it is started today
    # and resumed tomorrow (the transfer stops at the allowance, the partial stays).
    plan = policy.plan(cands, cfg.budget, max_fetch)
    drops = _drops(cfg, entries, state)
    plan.evict[:0] = [(policy.Candidate(sha, state.held[sha].size, 0, held=True), why)
                      for sha, why in drops]
    report = Report(plan, warnings=warn, paths={e.sha256: str(e.relpath) for e in found})
    report.paths.update({sha: h.relpath for sha, h in state.held.items()})
    if dry:
        return report
    _clean_partials(store, {c.sha256 for c in cands if policy.wanted(c)})
    allow = Allowance(left)
    try:
        _execute(store, state, cfg, plan, entries, allow, now, report)
    finally:
        state.downloaded[today] = state.downloaded.get(today, 0) + allow.used
        report.downloaded = allow.used
        store.save(state)
    if cfg.seeder:
        seed.reconcile(cfg.seeder, store, state, entries, warn)
    local = store.meta / "checkin.json"
    due = _checkin_due(local, state, now)
    data = checkins.document(cfg.key, _iso(now), cfg.budget, state, checkins.newest_name(cis),
                             reader(store, state))
    atomic_write(local, data)
    report.checkin = [str(local)]
    if log is not None and due:
        report.checkin.append(f"{log.where.rstrip('/')}/{checkins.append(log, data)}")
    return report


def _checkin_due(local: Path, state: State, now: datetime) -> bool:
    """A check-in goes to the log when what is held changed, or the last is 20 h old: a
    node that syncs every 30 minutes appends about once a day, not 48 times."""
    try:
        last = json.loads(local.read_bytes())
        at = datetime.fromisoformat(last["at"])
        held = {h["sha256"] for h in last["held"]}
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return held != set(state.held) or now - at >= timedelta(hours=20)
