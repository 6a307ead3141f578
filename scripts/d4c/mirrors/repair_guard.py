"""What `d4c mirrors repair` never writes, whatever the catalog says (docs/mirrors.md, "What
repair trusts"). The catalog and the health file drawn from it are untrusted input: a
hostile item can name a real file's key with its own sha256, or a new raw source with a
"good" copy on its own server. So a repair is left, with one line, when its sha256 is not
one, its version records a retention or takedown, another catalog row puts other bytes at
its key, or the key holds a good copy of another sha256 (a store's record that the bytes
match); and a raw source is restored only for a version released on the config's stores.
"""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from d4c.errors import D4CError
from d4c.mirrors import health
from d4c.mirrors.upstream import RETENTION
from d4c.release.targets import Target

HEX = re.compile(r"[0-9a-f]{64}")
# the s3 plug-in's look names the sha256 its metadata records ("exists with a different
# sha256 (<hex>)"); a local folder records none
_RECORDED = re.compile(r"exists with a different sha256 \(([0-9a-f]{64})\)")
BUNDLE_ROLE = "source"  # the role of a version's source bundle (d4c.catalog.assets)
KEY_FIELDS = ("collection", "version", "role", "file", "sha256")  # what key_of reads of a row


def well_formed(sha256: str) -> bool:
    """64 lowercase hex: what a sha256 from the catalog must be before it names a path or key."""
    return HEX.fullmatch(sha256) is not None


def retained(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """item id -> its `retention` row's evidence (`retention passed 2026-01-01: why`)."""
    return {str(r["item_id"]): str(r["evidence"] or "a retention date is recorded")
            for r in rows if r["check"] == RETENTION and r["item_id"]}


def key_of(t: Target, r: dict[str, Any]) -> str:
    if r["role"] == health.SOURCE_ROLE:
        return t.source_key_for(str(r["collection"]), str(r["version"]), str(r["sha256"]))
    return t.key_for(str(r["collection"]), str(r["version"]), str(r["file"]))


def claims(t: Target, rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, set[str]]]:
    """key on `t` -> sha256 -> the items whose rows put that file there (by the layout,
    whatever href the row gives)."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        if well_formed(str(r["sha256"] or "")):
            out[key_of(t, r)][str(r["sha256"])].add(str(r["item_id"]))
    return out


def conflict(t: Target, key: str, sha256: str, item: str, by_sha: dict[str, set[str]]) -> str | None:
    """One line when other rows put other bytes at this key (two releases never share one)."""
    others = {s: ids for s, ids in sorted(by_sha.items()) if s != sha256}
    if not others:
        return None
    theirs = "; ".join(f"{', '.join(sorted(ids))} (sha256 {s})" for s, ids in others.items())
    return (f"{key} on target {t.name!r}: item {item} (sha256 {sha256}) and {theirs} all resolve "
            "to this key with different sha256s: not repaired; one of these catalog items is wrong "
            "(a hostile or mistaken item): remove it from the catalog, check again, then repair")


def recorded(t: Target, key: str, sha256: str) -> str | None:
    """The other well-formed sha256 a store records for the key (s3 metadata), else None."""
    try:
        t.look(key, sha256)
    except D4CError as exc:
        found = _RECORDED.search(exc.message)
        return found.group(1) if found else None
    return None


def good_copy_of_other(t: Target, key: str, sha256: str,
                       stores: Iterable[tuple[Target, str]]) -> str | None:
    """The other sha256 whose good copy the key holds, or None. Candidates are the sha256s
    recorded for this key on this target and for the same file on the other stores being
    repaired (`stores`: each with its key there; a local folder keeps no record of its own). A record whose bytes do not match it is a damaged
    copy, which repair is for; a record that matches is some release's good copy."""
    seen: list[str] = []
    for s, at in ((t, key), *stores):
        other = recorded(s, at, sha256)
        if other and other != sha256 and other not in seen:
            seen.append(other)
    return next((s for s in seen if t.verify(key, s)), None)


def refuse_other(t: Target, key: str, file: str, sha256: str, item: str, other: str) -> str:
    return (f"{file} on target {t.name!r} ({key}) holds a good copy of sha256 {other} (recorded "
            f"for this key, and the bytes match it), not {sha256} as item {item} says: not "
            "repaired, repair never overwrites a release's good copy. If the item is right, another "
            "release overwrote the key: restore it by hand; if not (a hostile or mistaken item), "
            "remove it from the catalog")
