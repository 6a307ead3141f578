"""One GitHub issue per broken copy, from a health file: what the workflow posts.

`d4c mirrors issues` writes a JSON document the scheduled workflow (.github/workflows/
mirrors.yml) hands to its issue script: `broken` (one `{marker, title, body}` per failing
copy) and `ok` (the markers of copies that passed, whose open issues are closed). The
marker is an HTML comment naming the copy by a hash of its mirror and URL, so a copy keeps
one issue across runs. Evidence comes from servers, so it is shown in a code block with
backticks removed, and cut short.
"""
from __future__ import annotations

import hashlib
import shlex
from typing import Any

from d4c.mirrors import health
from d4c.mirrors.checks import ORIGIN
from d4c.mirrors.inventory import MAIN, printable

LABEL = "mirror-health"
_RECHECK = {1: "HEAD", 2: "sampled pieces", 3: "full sha256"}


def marker(mirror: str, href: str) -> str:
    digest = hashlib.sha256(f"{mirror}\n{href}".encode()).hexdigest()[:20]
    return f"<!-- d4c-mirror-health {digest} -->"


def _by_hand(r: dict[str, Any]) -> list[str]:
    """The request that shows this copy's fault, with nothing but curl."""
    href = shlex.quote(str(r["href"]))
    if r["tier"] in (0, 1):
        return [f"curl -sSI -H 'Origin: {ORIGIN}' -H 'x-amz-checksum-mode: ENABLED' {href}"]
    return [f"curl -sSL {href} | sha256sum   # expected {r['sha256']}, {r['size']} bytes"]


def body(r: dict[str, Any], *, catalog: str, tier: int) -> str:
    evidence = str(r["evidence"] or "").replace("`", "'")[:2000]
    command = (f"d4c mirrors check --catalog {shlex.quote(catalog)} --tier {max(tier, int(r['tier']))} "
               f"--date {r['date']}")
    lines = [marker(str(r["mirror"]), str(r["href"])),
             f"The mirror health check of {r['date']} found a copy **{r['status']}**.", "",
             "| | |", "|---|---|",
             f"| file | `{r['file'] or '(the catalog)'}` |", f"| version | {r['item_id'] or ''} |",
             f"| mirror | {r['mirror']} ({r['host']}) |", f"| URL | {r['href']} |",
             f"| check | tier {r['tier']} `{r['check']}` ({_RECHECK.get(int(r['tier']), 'mirror up and fresh')}) |",
             f"| sha256 | `{r['sha256'] or ''}` |", "", "Evidence:", "", "```", evidence, "```", "",
             "Reproduce the check (the date is the public seed of the sampled pieces):", "",
             "```sh", command, *_by_hand(r), "```", "",
             ("Repair the copy from one that passed: `d4c mirrors repair --dry-run`, then "
              "`d4c mirrors repair` (docs/mirrors.md). This issue is updated by every check "
              "and closed by the first one that finds the copy intact.")]
    return "\n".join(lines) + "\n"


def document(rows: list[dict[str, Any]], *, catalog: str, tier: int, health_file: str) -> dict[str, Any]:
    broken: dict[str, dict[str, str]] = {}
    for r in health.failures(rows):  # a tier 0 row and a tier 1 row may name one copy
        mark = marker(str(r["mirror"]), str(r["href"]))
        broken.setdefault(mark, {
            "marker": mark, "body": body(r, catalog=catalog, tier=tier),
            "title": printable(f"mirror health: {r['file'] or 'catalog'} {r['status']} on {r['mirror']}")[:200]})
    passed = {marker(str(k[2]), str(k[3])) for k, v in health.verdicts(rows).items() if v == "ok"}
    passed |= {marker(str(r["mirror"]), str(r["href"])) for r in rows
               if r["tier"] == 0 and r["check"] == "catalog" and r["status"] == "ok"}
    # Catalogs before d4c:mirror named every main href `main`: a copy now reported by its
    # target name also closes the issue opened under that name once it passes.
    failing = {str(r["href"]) for r in health.failures(rows)}
    passed |= {marker(MAIN, str(k[3])) for k, v in health.verdicts(rows).items()
               if v == "ok" and str(k[3]) not in failing}
    return {"label": LABEL, "health": health_file, "broken": list(broken.values()),
            "ok": sorted(passed - set(broken))}
