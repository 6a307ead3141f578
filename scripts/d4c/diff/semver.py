"""The SemVer verdict: the kind of change the data shows against the recipe's version bump.

Rules (DESIGN.md section 3, the Data for Canada convention):
- major: an output or a column removed, a column retyped (a rename is a removal plus an
  addition), geometry type or CRS changed, rows removed (by primary key); a PMTiles layer or
  a field of one removed, or its zoom range narrowed; a COG band removed or retyped, its
  pixel size or nodata value changed, or its extent shrunk;
- minor: an output or a column added, rows added, the bbox grew; a PMTiles layer or field
  added, or its zoom range widened; a COG band added;
- patch: any other change of content (values, nulls, row order of an unkeyed table);
- none: the logical content is unchanged (bytes alone may differ, e.g. a new library).
The bump must be at least the kind of change; a first release always passes. The release
of a pre-release is the bump the pre-release announced (2.0.0-rc.1 -> 2.0.0 is major), so
changes made between a release candidate and its release need no further bump.
Versions themselves (parsing, precedence, the kind of a bump) live in `d4c.semver`.
"""
from __future__ import annotations

from typing import Any

from d4c.semver import KINDS, bump, is_prerelease, suggest

__all__ = ["KINDS", "artifact_changes", "bump", "verdict"]


def _grew(old: list[float] | None, new: list[float] | None) -> bool:
    if not old or not new:
        return False
    return new[0] < old[0] or new[1] < old[1] or new[2] > old[2] or new[3] > old[3]


def artifact_changes(name: str, a: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, reason) for every change one artifact comparison shows."""
    if a["status"] == "removed":
        return [("major", f"output `{name}` removed")]
    if a["status"] == "added":
        return [("minor", f"output `{name}` added")]
    out: list[tuple[str, str]] = []
    cols = a["columns"]
    layers = a.get("layers") or {"added": [], "removed": []}
    out += [("major", f"`{name}`: layer `{x}` removed") for x in layers["removed"]]
    out += [("minor", f"`{name}`: layer `{x}` added") for x in layers["added"]]
    whole = tuple(f"{x}." for x in layers["removed"] + layers["added"])

    def own(c: str) -> bool:  # a field of an added or removed layer is said once, as the layer
        return not (whole and c.startswith(whole))

    kind = "band" if "raster" in a else "field" if "tiles" in a else "column"
    out += [("major", f"`{name}`: {kind} `{c}` removed") for c in cols["removed"] if own(c)]
    out += [("major", f"`{name}`: {kind} `{r['name']}` retyped {r['old']} -> {r['new']}")
            for r in cols["retyped"]]
    out += _format_changes(name, a)
    if not a["geometry_types"]["same"]:
        out.append(("major", f"`{name}`: geometry type changed"))
    if not a["crs"]["same"]:
        out.append(("major", f"`{name}`: CRS changed"))
    out += [("minor", f"`{name}`: {kind} `{c}` added") for c in cols["added"] if own(c)]
    if a.get("sample"):  # rows of a sample say nothing about the full data
        return out
    rows = a.get("row_diff") or {}
    if rows.get("removed"):
        out.append(("major", f"`{name}`: {rows['removed']} row(s) removed"))
    if rows.get("added"):
        out.append(("minor", f"`{name}`: {rows['added']} row(s) added"))
    if _grew(a["bbox"]["old"], a["bbox"]["new"]):
        out.append(("minor", f"`{name}`: bbox grew"))
    if not rows and a["rows"]["old"] is not None and a["rows"]["new"] is not None:
        delta = a["rows"]["new"] - a["rows"]["old"]
        if delta:  # no key to tell which rows: judge by the count
            out.append(("major" if delta < 0 else "minor", f"`{name}`: row count {delta:+d}"))
    if not out and _content_changed(a):
        out.append(("patch", f"`{name}`: values changed"))
    return out


def _format_changes(name: str, a: dict[str, Any]) -> list[tuple[str, str]]:
    """COG grid and PMTiles zoom range changes (bands and fields are columns, above)."""
    out: list[tuple[str, str]] = []
    grid = a.get("raster") or {}
    t = grid.get("transform") or {}
    if t.get("old") and t.get("new") and (t["old"][0], t["old"][4]) != (t["new"][0], t["new"][4]):
        size = f"{t['old'][0]:g} x {t['old'][4]:g} -> {t['new'][0]:g} x {t['new'][4]:g}"
        out.append(("major", f"`{name}`: pixel size changed {size}"))
    if grid and not grid["nodata"]["same"]:
        out.append(("major", f"`{name}`: nodata changed {grid['nodata']['old']} -> {grid['nodata']['new']}"))
    if grid and _grew(a["bbox"]["new"], a["bbox"]["old"]):
        out.append(("major", f"`{name}`: extent shrunk"))
    zoom = a.get("tiles") or {}
    lo, hi = zoom.get("min_zoom") or {}, zoom.get("max_zoom") or {}
    if None not in (lo.get("old"), lo.get("new"), hi.get("old"), hi.get("new")):
        if lo["new"] > lo["old"] or hi["new"] < hi["old"]:
            out.append(("major", f"`{name}`: zoom range narrowed {lo['old']}-{hi['old']} -> {lo['new']}-{hi['new']}"))
        elif lo["new"] < lo["old"] or hi["new"] > hi["old"]:
            out.append(("minor", f"`{name}`: zoom range widened {lo['old']}-{hi['old']} -> {lo['new']}-{hi['new']}"))
    return out


def _content_changed(a: dict[str, Any]) -> bool:
    if a["logical"]["same"] is not None:
        return not a["logical"]["same"]
    rows = a.get("row_diff") or {}
    if rows:
        return bool(rows.get("changed") or rows.get("only_old") or rows.get("only_new"))
    return not a["bytes"]["same"]  # nothing finer known: any byte change may be a value change


def verdict(old_version: str | None, new_version: str, artifacts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Compare the required kind of change with the bump; `ok` False fails the check."""
    if old_version is None:
        return {"old_version": None, "new_version": new_version, "bump": "first release",
                "required": "none", "reasons": [], "ok": True}
    reasons = [r for name, a in artifacts.items() for r in artifact_changes(name, a)]
    required = max((k for k, _ in reasons), key=KINDS.index, default="none")
    try:
        actual = bump(old_version, new_version)
    except ValueError as exc:
        return {"old_version": old_version, "new_version": new_version, "bump": "invalid",
                "required": required, "reasons": [{"kind": k, "reason": r} for k, r in reasons],
                "ok": False, "message": str(exc)}
    ok = actual != "downgrade" and KINDS.index(actual) >= KINDS.index(required)
    if actual == "downgrade":
        message = f"version went down ({old_version} -> {new_version})"
    elif ok:
        message = f"{actual} bump covers the {required} change"
        if is_prerelease(old_version):
            message += f" ({old_version} announced a {actual} release)"
    else:
        message = (f"the data shows a {required} change but the version bump {old_version} -> "
                   f"{new_version} is {actual}: set version to {suggest(old_version, required)}")
    return {"old_version": old_version, "new_version": new_version, "bump": actual,
            "required": required, "reasons": [{"kind": k, "reason": r} for k, r in reasons],
            "ok": ok, "message": message}

