"""Render a diff report as markdown (for reviewers) or JSON (for tools).

The markdown is bounded however large the data: every list is capped, every value is
shortened, and the whole text is cut at a line boundary below `limit` bytes (GitHub
takes 1 MiB per step summary and 65,536 characters per comment).
"""
from __future__ import annotations

import json
from typing import Any

from d4c import canonical

STEP_SUMMARY_LIMIT = 512 * 1024  # well under GitHub's 1 MiB step-summary cap
COMMENT_LIMIT = 60_000  # under GitHub's 65,536-character comment body cap
MAX_ITEMS = 15


def _short(value: Any, width: int = 60, ticks: bool = False) -> str:
    """One shortened line; backticks survive only in our own texts (`ticks`), never in data."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text.replace("\n", " ").replace("|", "\\|")
    text = text if ticks else text.replace("`", "'")
    return text if len(text) <= width else text[: width - 3] + "..."


def _capped(items: list[str]) -> list[str]:
    extra = len(items) - MAX_ITEMS
    return items[:MAX_ITEMS] + ([f"... and {extra} more"] if extra > 0 else [])


def _num(old: int | None, new: int | None) -> str:
    if old is None or new is None:
        return f"{old if old is not None else '?'} -> {new if new is not None else '?'}"
    return f"{old:,}" if old == new else f"{old:,} -> {new:,} ({new - old:+,})"


def _same(pair: dict[str, Any]) -> str:
    if pair.get("same") is None:
        return "unknown"
    return "same" if pair["same"] else "**changed**"


def _row(name: str, a: dict[str, Any]) -> str:
    if a["status"] != "compared":
        f = a.get("facts") or {}
        return (f"| `{_short(name, 40)}` | {a['status']} | | {_num(f.get('size'), f.get('size'))} | "
                f"{_num(f.get('rows'), f.get('rows'))} | {f.get('columns', '?')} columns | "
                f"{_short(f.get('geometry_types') or '')} | {_short(f.get('crs') or '')} | "
                f"{_short(f.get('bbox') or '', 40)} |")
    c = a["columns"]
    cols = f"+{len(c['added'])} -{len(c['removed'])} ~{len(c['retyped'])}"
    return (f"| `{_short(name, 40)}` | {_same(a['bytes'])} | {_same(a['logical'])} | "
            f"{_num(a['size']['old'], a['size']['new'])} | {_num(a['rows']['old'], a['rows']['new'])} | "
            f"{cols} | {_same(a['geometry_types'])} | {_same(a['crs'])} | {_same(a['bbox'])} |")


def _details(name: str, a: dict[str, Any]) -> list[str]:
    if a["status"] != "compared":
        return []
    items: list[str] = []
    c = a["columns"]
    if c["added"]:
        items.append("columns added: " + ", ".join(f"`{_short(x, 40)}`" for x in _capped(c["added"])))
    if c["removed"]:
        items.append("columns removed: " + ", ".join(f"`{_short(x, 40)}`" for x in _capped(c["removed"])))
    items += _capped([f"column `{_short(r['name'], 40)}` retyped: {_short(r['old'], 30)} -> "
                      f"{_short(r['new'], 30)}" for r in c["retyped"]])
    items += _capped([f"nulls in `{_short(n['name'], 40)}`: {_num(n['old'], n['new'])}" for n in a["nulls"]])
    for key in ("geometry_types", "crs", "bbox"):
        if a[key]["same"] is False:
            items.append(f"{key.replace('_', ' ')}: {_short(a[key]['old'])} -> {_short(a[key]['new'])}")
    rd = a.get("row_diff")
    if rd and rd["by"] == "key":
        key = ", ".join(rd["key"])
        items.append(f"rows by key `{_short(key, 60)}`: {rd['added']:,} added, {rd['removed']:,} removed, "
                     f"{rd['changed']:,} changed")
        if rd["changed_columns"]:
            per = [f"`{_short(k, 40)}` {v:,}" for k, v in rd["changed_columns"].items()]
            items.append("changed values per column: " + ", ".join(_capped(per)))
        for kind in ("added", "removed", "changed"):
            items += [f"{kind}: {_short(ex, 160)}" for ex in rd["examples"][kind]]
        if rd["duplicate_keys"]["new"]:
            items.append(f"**{rd['duplicate_keys']['new']:,} duplicate key(s)** in the new version")
    elif rd:
        items.append(f"rows ({rd['note']}): {rd['only_old']:,} only in the previous version, "
                     f"{rd['only_new']:,} only in the new one")
    if not items:
        return []
    return [f"<details><summary><code>{_short(name, 40)}</code></summary>", "",
            *(f"- {i}" for i in items), "", "</details>", ""]


def _bounded(lines: list[str], limit: int) -> str:
    out: list[str] = []
    size = 0
    note = "\n_... diff cut here to stay under the size limit; see the JSON report for the rest._\n"
    for line in lines:
        n = len(line.encode()) + 1
        if size + n > limit - len(note):
            return "\n".join(out) + "\n" + note
        out.append(line)
        size += n
    return "\n".join(out) + "\n"


def markdown(report: dict[str, Any], limit: int = STEP_SUMMARY_LIMIT) -> str:
    """The reviewer's build diff for one dataset, at most `limit` bytes of UTF-8."""
    return _bounded(_lines(report), limit)


def _lines(report: dict[str, Any]) -> list[str]:
    sv = report["semver"]
    ds, new = report["dataset"], report["version"]
    old = report.get("against")
    head = f"## Build diff: `{ds}` {old or '(no release yet)'} -> {new}"
    if sv["ok"]:
        status = f"**SemVer: pass** ({_short(sv.get('message') or sv['bump'], 200, ticks=True)})"
    else:
        status = f"**SemVer: FAIL**: {_short(sv.get('message', ''), 300, ticks=True)}"
    lines = [head, "", status, ""]
    if report.get("note"):
        lines += [f"> {_short(report['note'], 400, ticks=True)}", ""]
    arts = report["artifacts"]
    if arts:
        lines += ["| artifact | bytes | logical | size | rows | columns +/-/~ | geometry | CRS | bbox |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += _capped([_row(n, a) for n, a in arts.items()])
        lines.append("")
        for n, a in list(arts.items())[:MAX_ITEMS]:
            lines += _details(n, a)
    if sv["reasons"]:
        lines += ["### Changes by SemVer kind", ""]
        lines += _capped([f"- {r['kind']}: {_short(r['reason'], 160, ticks=True)}" for r in sv["reasons"]])
        lines.append("")
    for title, key in (("Sources", "sources"), ("Environment", "environment"), ("Parameters", "params")):
        changes = report.get(key) or []
        none = "- unchanged" if old else "- first release: nothing to compare"
        lines += [f"### {title}", ""]
        lines += _capped([f"- `{_short(c['field'], 60)}`: {_short(c['old'])} -> {_short(c['new'])}"
                          for c in changes]) or [none]
        lines.append("")
    rep = report.get("reproducibility")
    lines += ["### Reproducibility (`d4c build --check`)", ""]
    if rep is None:
        lines.append("- not run")
    else:
        lines.append(f"- {'bit-for-bit identical' if rep['ok'] else '**NOT reproducible**'}")
        lines += _capped([f"- {_short(d, 160)}" for d in rep.get("details", [])])
    lines += ["", "### Reproduce locally", "", "```sh", *report["reproduce"], "```"]
    return lines


def combined(reports: list[dict[str, Any]], limit: int = COMMENT_LIMIT, header: str = "") -> str:
    """Several datasets' diffs in one bounded text (the sticky PR comment)."""
    if not reports:
        return _bounded([header, "", "No dataset is touched by this change."], limit)
    failed = [r["dataset"] for r in reports if not r["semver"]["ok"]]
    top = [header, "", f"{len(reports)} dataset(s) built; SemVer failures: "
           + (", ".join(f"`{d}`" for d in failed) if failed else "none"), ""]
    share = max(2_000, (limit - 2_000) // len(reports))
    body = "\n".join(markdown(r, share) for r in reports)
    return _bounded(top + body.splitlines(), limit)


def to_json(report: dict[str, Any]) -> str:
    return canonical.dumps(report)
