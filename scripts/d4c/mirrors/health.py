"""The health file (`health/<date>.parquet`), the copy verdicts, the at-risk signal and
the markdown summary.

One row per artifact x copy x check (d4c.mirrors.checks.row). A copy's verdict is the
tier 3 result when there is one (the full sha256 settles it), else the worst of its
other rows: `missing`, `refused`, `corrupt`, `unreachable`, `changed` (an ETag that moved and was
not re-hashed) fail; `ok`, `warning` and `skipped` pass. The `upstream` and `retention`
rows (d4c.mirrors.upstream) are no copy's verdict: they are evidence for the at-risk signal.
A raw source's mirrored copy (role `raw-source`, d4c.mirrors.sources) is a copy like any
other, but not one of its version's files: it puts the version at risk when fewer of its
source's copies pass than the release made (up to `--min-copies`).
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from d4c.atomic import atomic_path

SCHEMA = pa.schema([
    ("date", pa.string()), ("checked_at", pa.string()), ("tier", pa.int8()), ("check", pa.string()),
    ("collection", pa.string()), ("version", pa.string()), ("item_id", pa.string()),
    ("asset", pa.string()), ("role", pa.string()), ("file", pa.string()), ("sha256", pa.string()), ("size", pa.int64()),
    ("mirror", pa.string()), ("href", pa.string()), ("host", pa.string()),
    ("status", pa.string()), ("evidence", pa.string()), ("etag", pa.string()),
    ("http_status", pa.int32()), ("bytes_read", pa.int64()),
])
BAD = ("missing", "refused", "corrupt", "unreachable", "changed")
_RANK = {s: n for n, s in enumerate(("ok", "skipped", "warning", "changed", "unreachable",
                                     "refused", "missing", "corrupt"))}
_DATED = re.compile(r"^(\d{4}-\d\d-\d\d)\.parquet$")
NOT_COPIES = ("scrape", "upstream", "retention")  # checks that give no copy a verdict
SOURCE_ROLE = "raw-source"  # the role of a raw source's mirrored copy (d4c.mirrors.sources)


def write(rows: list[dict[str, Any]], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    order = sorted(rows, key=lambda r: (r["item_id"] or "", r["asset"] or "", r["mirror"] or "",
                                        r["tier"], r["check"], r["href"] or ""))
    table = pa.Table.from_pylist(order, schema=SCHEMA)
    with atomic_path(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def latest(health_dir: Path, before: str | None = None) -> Path | None:
    """The newest `<date>.parquet` in the folder (strictly before `before` when given)."""
    if not health_dir.is_dir():
        return None
    dated = sorted(p for p in health_dir.iterdir() if _DATED.match(p.name)
                   and (before is None or p.name[:10] < before))
    return dated[-1] if dated else None


def read(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def baseline(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """href -> ETag as the last check saw it, from copies that passed (and upstreams that
    answered unchanged)."""
    verdict = verdicts(rows := list(rows))
    out = {}
    for r in rows:
        key = (r["item_id"], r["asset"], r["mirror"], r["href"])
        passed = verdict.get(key) if r["check"] == "head" else r["status"] if r["check"] == "upstream" else None
        if r["etag"] and passed == "ok":
            out[r["href"]] = r["etag"]
    return out


def verdicts(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, str], str]:
    """(item id, asset, mirror, href) -> the copy's status."""
    by: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["item_id"] and r["href"] and r["tier"] >= 1 and r["check"] not in NOT_COPIES:
            by[(r["item_id"], r["asset"], r["mirror"], r["href"])].append(r)
    out = {}
    for key, rs in by.items():
        full = [r for r in rs if r["tier"] == 3 and r["status"] != "skipped"]
        pool = full or rs
        worst = max((r["status"] for r in pool), key=lambda s: _RANK.get(s, 0))
        out[key] = "ok" if worst in ("warning", "skipped") else worst
    return out


def provider(host: str) -> str:
    """Who runs a host: its last two DNS labels (zenodo.org, archive.org, source.coop);
    an IP address or a bare name as it is (host:port, so local test servers differ)."""
    name = host.rsplit("@", 1)[-1]
    bare = name.split(":")[0]
    if re.fullmatch(r"[\d.]+|\[.*\]|localhost|local|file", bare) or "." not in bare:
        return name
    return ".".join(bare.split(".")[-2:])


@dataclass
class Risk:
    item_id: str
    copies_ok: int
    providers: int
    at_risk: bool
    reasons: list[str] = field(default_factory=list)
    last_verified: str | None = None


def risks(rows: list[dict[str, Any]], min_copies: int = 3) -> dict[str, Risk]:
    """Per version (item id): the at-risk signal over its data files (all files when it has
    none): fewer than `min_copies` copies pass, one provider holds every passing copy, an
    upstream source is gone or changed, a raw source lost a mirrored copy (or its bundle's
    list of them was unusable), or a retention or takedown date is recorded."""
    verdict = verdicts(rows)
    data_assets = {(r["item_id"], r["asset"]) for r in rows if r["role"] == "data"}
    raw = {(r["item_id"], r["asset"]): r["file"] for r in rows if r["role"] == SOURCE_ROLE}
    per_asset: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # -> (status, host)
    hosts = {(r["item_id"], r["asset"], r["mirror"], r["href"]): r["host"] for r in rows if r["href"]}
    when: dict[str, str] = {}
    for key, status in verdict.items():
        if (key[0], key[1]) not in raw:  # a raw source's copies: _sources_short below
            per_asset[(key[0], key[1])].append((status, hosts.get(key) or ""))
    for r in rows:
        if r["item_id"]:
            when[r["item_id"]] = max(when.get(r["item_id"], ""), r["checked_at"])
    by_item: dict[str, list[tuple[str, list[tuple[str, str]]]]] = defaultdict(list)
    for (item, asset), copies in per_asset.items():
        by_item[item].append((asset, copies))
    out = {}
    for item, assets in by_item.items():
        data = [a for a in assets if (item, a[0]) in data_assets] or assets
        worst_ok, worst_prov, reasons = None, None, []
        for asset, copies in sorted(data):
            ok_hosts = [h for s, h in copies if s == "ok"]
            n, provs = len(ok_hosts), len({provider(h) for h in ok_hosts})
            worst_ok = n if worst_ok is None else min(worst_ok, n)
            worst_prov = provs if worst_prov is None else min(worst_prov, provs)
            if n < min_copies:
                reasons.append(f"{asset}: {n} of {len(copies)} copies pass (fewer than {min_copies})")
            elif provs < 2:
                reasons.append(f"{asset}: one provider holds every passing copy")
        out[item] = Risk(item, worst_ok or 0, worst_prov or 0, bool(reasons), reasons, when.get(item))
    signals = _signals(rows)
    for item, more in _sources_short(verdict, raw, min_copies).items():
        signals.setdefault(item, []).extend(more)
    for item, more in signals.items():
        risk = out.setdefault(item, Risk(item, 0, 0, True, [], when.get(item)))
        risk.reasons += more
        risk.at_risk = True
    return out


def _sources_short(verdict: dict[tuple[str, str, str, str], str], raw: dict[tuple[str, str], str],
                   min_copies: int) -> dict[str, list[str]]:
    """item id -> its raw sources with fewer passing mirrored copies than the release made
    (up to `min_copies`): `d4c verify` needs one once the upstream is gone."""
    per: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, status in verdict.items():
        if (key[0], key[1]) in raw:
            per[(key[0], key[1])].append(status)
    out: dict[str, list[str]] = defaultdict(list)
    for (item, asset), statuses in sorted(per.items()):
        n = statuses.count("ok")
        if n < min(min_copies, len(statuses)):
            out[item].append(f"raw source {raw[(item, asset)]} ({asset}): {n} of {len(statuses)} "
                             "mirrored copies pass")
    return out


def _signals(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """item id -> the reasons its upstream, retention and source-list rows give."""
    out: dict[str, list[str]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: (r["check"], r["href"] or "")):
        if r["check"] == "upstream" and r["status"] in ("missing", "refused", "changed"):
            what = {"missing": "gone"}.get(r["status"], r["status"])
            out[r["item_id"]].append(f"upstream {r['file']} {what}: {r['href']} ({r['evidence']})")
        elif r["check"] == "retention" and r["item_id"]:
            out[r["item_id"]].append(str(r["evidence"]))
        elif r["check"] == "sources" and r["status"] == "warning" and r["item_id"]:
            out[r["item_id"]].append(f"raw sources not all checked: {r['evidence']}")
    return out


def summary(rows: list[dict[str, Any]], *, date: str, tier: int, path: Path,
            risk: dict[str, Risk], stats: dict[str, Any]) -> str:
    """The markdown report: counts by tier and status, every failing copy, the at-risk list."""
    counts: dict[tuple[int, str], int] = defaultdict(int)
    for r in rows:
        counts[(r["tier"], r["status"])] += 1
    statuses = [s for s in _RANK if any(k[1] == s for k in counts)]
    lines = [f"## Mirror health {date} (tiers 0-{tier})", "",
             (f"`{path}`: {len(rows)} checks of {stats.get('artifacts', 0)} artifacts "
             f"x {stats.get('copies', 0)} copies; {stats.get('requests', 0)} requests, "
             f"{stats.get('bytes', 0)} bytes read, {stats.get('seconds', 0):.1f} s."), "",
             "| tier | " + " | ".join(statuses) + " |", "|---|" + "---|" * len(statuses)]
    for t in sorted({k[0] for k in counts}):
        lines.append(f"| {t} | " + " | ".join(str(counts.get((t, s), 0)) for s in statuses) + " |")
    bad = failures(rows)
    lines += ["", f"### Failing copies: {len(bad)}", ""]
    if bad:
        lines += ["| file | mirror | status | check | evidence |", "|---|---|---|---|---|"]
        for r in bad[:500]:
            lines.append(f"| `{r['file']}` | {r['mirror']} ({r['host']}) | {r['status']} | "
                         f"tier {r['tier']} {r['check']} | {_cell(r['evidence'])} |")
    at = [x for x in risk.values() if x.at_risk]
    lines += ["", f"### At risk: {len(at)} of {len(risk)} versions", ""]
    for x in sorted(at, key=lambda x: x.item_id)[:500]:
        lines.append(f"- `{x.item_id}`: {'; '.join(x.reasons)}")
    return "\n".join(lines) + "\n"


def failures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per failing copy (its worst row), in file order; tier 0 rows too."""
    verdict = verdicts(rows)
    out = []
    seen = set()
    for r in sorted(rows, key=lambda r: (r["file"] or "", r["mirror"] or "", -_RANK.get(r["status"], 0))):
        if r["tier"] == 0:
            if r["status"] in BAD:
                out.append(r)
            continue
        key = (r["item_id"], r["asset"], r["mirror"], r["href"])
        status = verdict.get(key)
        if status in BAD and key not in seen and r["status"] == status:
            seen.add(key)
            out.append(r)
    return out


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")[:300]
