"""`d4c mirrors check`: the tiers over every copy of every artifact in the catalog.

Tier 0 once per mirror, then per copy, concurrently (per-host limits in d4c.mirrors.net):
tier 1 (HEAD), tier 2 (sampled pieces), then tier 3 (full sha256) for the copies that
failed or changed and a rolling sample, in that order, while the budget lasts. The
copies are the catalog's and, with tier 1, the raw sources' mirrored copies each version's
source bundle lists (d4c.mirrors.sources), checked the same way. Beside the copies: each version's recorded retention date (with tier 0) and a HEAD of each of
its upstream sources (with tier 2, which reads the manifests), the at-risk evidence of d4c.mirrors.upstream.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from d4c.mirrors import checks, health, sources, upstream
from d4c.mirrors.checks import Context, Row, ServiceChecksums, row
from d4c.mirrors.inventory import Artifact, Copy, Version, fetch_small, read_catalog, versions_of
from d4c.mirrors.net import Net, file_path

DEFAULT_BUDGET = 10 * 2**30
CATALOG_ROWS = "catalog-rows"  # the check kind of a catalog asset left out (bad sha256 or size)


@dataclass
class Options:
    tier: int = 2
    budget: int = DEFAULT_BUDGET
    pieces: int = 4
    jobs: int = 16
    per_host: int = 4
    rate: float = 50.0
    retries: int = 3
    backoff: float = 0.5
    min_copies: int = 3
    date: str | None = None  # the seed date; default today (UTC)
    scrape: bool = True
    deadline: float = Net.DEADLINE  # seconds one request may take in all (d4c.mirrors.net)
    progress: Callable[[int, int], None] | None = None


@dataclass
class Report:
    date: str
    rows: list[Row]
    risk: dict[str, health.Risk]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[Row]:
        return health.failures(self.rows)


def _tier0(ctx: Context, versions: list[Version], catalog: str) -> list[Row]:
    """Each mirror is up and fresh: it answers for a copy of the newest release it holds."""
    rows = []
    if catalog.startswith(("http://", "https://")):
        got = ctx.net.request("HEAD", catalog)
        status = checks._gone(got) or "ok"
        rows.append(row(ctx, 0, "catalog", None, Copy("catalog", catalog), status,
                        f"{checks._why(got)}, Last-Modified {got.header('last-modified')}",
                        etag=got.header("etag"), http_status=got.status))
    newest: dict[str, tuple[str, Artifact, Copy]] = {}
    for v in versions:
        for art in v.artifacts:
            for copy in art.copies:
                have = newest.get(copy.mirror)
                if have is None or v.created > have[0]:
                    newest[copy.mirror] = (v.created, art, copy)
    for mirror, (created, art, copy) in sorted(newest.items()):
        local = file_path(copy.href)
        if local is not None:
            status, why, code = ("ok" if local.is_file() else "missing"), str(local), None
        else:
            got = ctx.net.request("HEAD", copy.href)
            status, why, code = checks._gone(got) or "ok", checks._why(got), got.status
        rows.append(row(ctx, 0, "fresh", art, copy, status,
                        f"newest release on {mirror} ({art.item_id}, created {created}): {why}",
                        http_status=code))
    return rows


def _sample_rank(date: str, art: Artifact, copy: Copy) -> bytes:
    return hashlib.sha256(f"{date}:{art.sha256}:{copy.href}".encode()).digest()


def _scrape(ctx: Context, versions: list[Version]) -> list[Row]:
    from d4c.mirrors import scrape

    rows = []
    for v in versions:
        for art in v.artifacts:
            tor = v.artifact(art.torrent) if art.torrent else None
            if tor is None:
                continue
            data = fetch_small(ctx.net, tor, limit=16 << 20)
            if data is None:
                continue
            try:
                infohash, trackers = scrape.torrent_facts(data)
            except (ValueError, IndexError):
                continue
            for tracker in trackers:
                copy = Copy(tracker, f"magnet:?xt=urn:btih:{infohash}")
                try:
                    got = scrape.scrape(ctx.net, tracker, infohash)
                except (OSError, ValueError) as exc:
                    rows.append(row(ctx, 1, "scrape", art, copy, "warning", f"scrape failed: {exc}"))
                    continue
                status = "ok" if got["complete"] > 0 else "warning"
                rows.append(row(ctx, 1, "scrape", art, copy, status,
                                f"infohash {infohash}: seeders {got['complete']}, leechers "
                                f"{got['incomplete']}, downloaded {got['downloaded']}"))
    return rows


def check(catalog: str, options: Options, *, health_dir: Path | None = None,
          s3_client: Any = None) -> Report:
    start = time.monotonic()
    date = options.date or datetime.now(UTC).strftime("%Y-%m-%d")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    left: list[str] = []  # catalog assets with a bad sha256 or size (d4c.mirrors.inventory)
    versions = versions_of(read_catalog(catalog, s3_client), left)
    net = Net(per_host=options.per_host, rate=options.rate, retries=options.retries,
              backoff=options.backoff, deadline=options.deadline)
    before = health.latest(health_dir, before=date) if health_dir else None
    base = health.baseline(health.read(before)) if before else {}
    ctx = Context(net, date, now, options.pieces, base)
    rows: list[Row] = [row(ctx, 0, CATALOG_ROWS, None, None, "warning", why) for why in left]
    rows += _tier0(ctx, versions, catalog)
    for v in versions:
        rows += upstream.retention_row(ctx, v)
    work = [(v, a, c) for v in versions for a in v.artifacts for c in a.copies]
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        # the raw sources' mirrored copies, from each version's bundle (d4c.mirrors.sources)
        found = sources.jobs(ctx, versions, pool) if options.tier >= 1 else sources.Jobs([], {}, [])
        rows += found.rows
        work += found.work
        checked = _copies(ctx, options, ServiceChecksums(net), work, pool)
        results = {(job[1].item_id, job[1].asset, job[2].href): got for job, got in zip(work, checked)}
        rows += [r for got in checked for r in got]
        if options.tier >= 2:  # the manifests tier 2 reads anyway: tier 1 stays one HEAD a copy
            heads = upstream.Upstream(ctx)
            for got in pool.map(heads.rows, versions):
                rows += got
        if options.tier >= 1 and options.scrape:
            rows += _scrape(ctx, versions)
        if options.tier >= 3:
            rows += _tier3(ctx, options, work, results, pool)
    rows += sources.given(rows, found.shared)
    seconds = time.monotonic() - start
    risk = health.risks(rows, options.min_copies)
    stats = {"artifacts": sum(len(v.artifacts) for v in versions), "copies": len(work),
             "source_copies": len(found.work), "versions": len(versions),
             "requests": sum(net.requests.values()), "by_method": dict(net.requests),
             "bytes": net.bytes_read, "seconds": seconds}
    return Report(date, rows, risk, stats)


def _copies(ctx: Context, options: Options, services: ServiceChecksums,
            work: list[tuple[Version, Artifact, Copy]],
            pool: ThreadPoolExecutor) -> list[list[Row]]:
    """Tiers 1 and 2 of every copy, concurrently: the rows of each, in `work`'s order."""
    def one(job: tuple[Version, Artifact, Copy]) -> list[Row]:
        v, art, copy = job
        out = checks.tier1(ctx, services, v, art, copy) if options.tier >= 1 else []
        if options.tier >= 2 and art.is_data and not any(r["status"] in checks.FAILING for r in out):
            out += checks.tier2(ctx, v, art, copy)
        return sources.with_upstream(art, out)

    out = []
    for done, got in enumerate(pool.map(one, work), 1):
        out.append(got)
        if options.progress:
            options.progress(done, len(work))
    return out


def _tier3(ctx: Context, options: Options, work: list[tuple[Version, Artifact, Copy]],
           results: dict[tuple[str, str, str], list[Row]], pool: ThreadPoolExecutor) -> list[Row]:
    """Full sha256: failing or changed copies first, then the rolling sample, within budget."""
    urgent, sample = [], []
    for v, art, copy in work:
        got = results.get((art.item_id, art.asset, copy.href), [])
        statuses = {r["status"] for r in got}
        if statuses & {"corrupt", "changed"}:
            reason = "changed ETag" if "changed" in statuses and "corrupt" not in statuses else "failed a check"
            urgent.append((art, copy, reason))
        elif not statuses & checks.FAILING:
            sample.append((_sample_rank(ctx.date, art, copy), art, copy))
    chosen, rows, spent = [], [], 0
    for art, copy, reason in urgent:
        if spent + art.size > options.budget:
            rows.append(row(ctx, 3, "sha256", art, copy, "skipped",
                            f"{reason}, but over the budget of {options.budget} bytes"))
            continue
        spent += art.size
        chosen.append((art, copy, reason))
    for _, art, copy in sorted(sample, key=lambda s: s[0]):
        if spent + art.size > options.budget:
            continue
        spent += art.size
        chosen.append((art, copy, "rolling sample"))
    for got in pool.map(lambda job: sources.with_upstream(job[0], checks.tier3(ctx, *job)), chosen):
        rows += got
    return rows


def write_report(report: Report, health_dir: Path, tier: int) -> tuple[Path, Path, str]:
    dest = health_dir / f"{report.date}.parquet"
    health.write(report.rows, dest)
    text = health.summary(report.rows, date=report.date, tier=tier, path=dest,
                          risk=report.risk, stats=report.stats)
    md = health_dir / f"{report.date}.md"
    from d4c.atomic import atomic_write

    atomic_write(md, data=text.encode())
    return dest, md, text


def failure_lines(rows: Iterable[Row]) -> list[str]:
    out = []
    for r in health.failures(list(rows)):
        if r["role"] == sources.ROLE:
            out.append(_source_line(r))
            continue
        where = f"{r['file']} on mirror {r['mirror']}" if r["file"] else f"mirror {r['mirror']}"
        out.append(f"{where} ({r['href']}): {r['status']}, tier {r['tier']} {r['check']}: {r['evidence']}")
    return out


# What to do about a mirrored raw source, by its status: repair puts back missing and corrupt
# copies; a refused read is a policy to fix, and a changed ETag needs the hash first.
_SOURCE_FIX = {
    "refused": "fix the mirror's read policy (repair with credentials puts it back only if it "
               "is absent or other bytes)",
    "changed": "hash it with `d4c mirrors check --tier 3`, then `d4c mirrors repair` if it is corrupt",
    "unreachable": "check the mirror, then run the check again",
}
_RESTORE = "restore it with `d4c mirrors repair` (from another mirror's copy or its upstream)"


def _source_line(r: Row) -> str:
    """A mirrored raw source: which version needs it, and how it comes back."""
    return (f"raw source {r['file']} (sha256 {r['sha256']}) of {r['collection']} v{r['version']} "
            f"on mirror {r['mirror']} ({r['href']}): {r['status']}, tier {r['tier']} {r['check']}: "
            f"{r['evidence']}; `d4c verify` needs it once the upstream is gone: "
            + _SOURCE_FIX.get(str(r["status"]), _RESTORE))


def warning_lines(rows: Iterable[Row]) -> list[str]:
    """A catalog asset left out, or a version whose bundle's source list was unusable or
    partly left out: one line each."""
    return [r["evidence"] if r["check"] == CATALOG_ROWS else f"{r['collection']} v{r['version']}: {r['evidence']}"
            for r in rows if r["check"] in (sources.LIST, CATALOG_ROWS) and r["status"] == "warning"]
