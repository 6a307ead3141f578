"""The SemVer verdict: the kind of change the data shows against the recipe's version bump.

Rules (DESIGN.md section 3, the Data for Canada convention):
- major: an output or a column removed, a column retyped (a rename is a removal plus an
  addition), geometry type or CRS changed, rows removed (by primary key);
- minor: an output or a column added, rows added, the bbox grew;
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
    out += [("major", f"`{name}`: column `{c}` removed") for c in cols["removed"]]
    out += [("major", f"`{name}`: column `{r['name']}` retyped {r['old']} -> {r['new']}")
            for r in cols["retyped"]]
    if not a["geometry_types"]["same"]:
        out.append(("major", f"`{name}`: geometry type changed"))
    if not a["crs"]["same"]:
        out.append(("major", f"`{name}`: CRS changed"))
    out += [("minor", f"`{name}`: column `{c}` added") for c in cols["added"]]
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

