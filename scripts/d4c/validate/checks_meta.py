"""Lints on identity and metadata: folder, versions vs releases, license, languages, ORCID."""
from __future__ import annotations

import difflib
import re
from functools import lru_cache

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.licenses._spdx import LICENSES  # the list: no public deprecated flag

from d4c import model, semver
from d4c.errors import D4CError
from d4c.validate.context import Context
from d4c.validate.lints import Finding

_ORCID = re.compile(r"^(?:https://orcid\.org/)?(\d{4}-\d{4}-\d{4}-\d{3}[\dX])$")
_ID = re.compile(r"^[a-z]{2}(-[a-z]{2})?_[a-z0-9]+(?:[_-][a-z0-9]+)*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@lru_cache(maxsize=1)
def spdx_ids() -> dict[str, bool]:
    """SPDX license id -> deprecated?, from the SPDX license list packaging maintains.

    packaging.licenses' public API canonicalizes expressions but has no deprecated flag,
    so the table is read from the list module it ships with it (packaging is locked).
    """
    return {entry["id"]: entry["deprecated"] for entry in LICENSES.values()}


def spdx_guess(lic: str, known: dict[str, bool]) -> str | None:
    """The SPDX id `lic` was probably meant to be: its canonical spelling, else the closest."""
    try:
        canonical = str(canonicalize_license_expression(lic))
    except InvalidLicenseExpression:
        canonical = ""
    if canonical in known:
        return canonical
    return next(iter(difflib.get_close_matches(lic, list(known), n=1)), None)


def orcid_ok(orcid: str) -> bool:
    """ISO 7064 MOD 11-2 check digit, as ORCID defines it."""
    m = _ORCID.match(orcid)
    if not m:
        return False
    digits = m.group(1).replace("-", "")
    total = 0
    for ch in digits[:-1]:
        total = (total + int(ch)) * 2
    check = (12 - total % 11) % 11
    return digits[-1] == ("X" if check == 10 else str(check))


def check_identity(ctx: Context) -> None:
    rid, version = ctx.text("id"), ctx.text("version")
    if rid is not None and ctx.recipe.name == "recipe.yaml" and ctx.folder.name != rid:
        ctx.add("D4C302", ("id",), f"id `{rid[:80]}` differs from its folder `{ctx.folder.name}`")
    root = ctx.root
    if root is None or rid is None or version is None or not semver.is_valid(version):
        return
    if not _ID.match(rid):  # the schema reports it; never build paths from a bad id
        return
    folder = root / "releases" / rid
    if not folder.is_dir():
        return
    newest: tuple[semver.Version, str] | None = None
    for record in sorted(folder.glob("*.json")):
        try:
            released = model.read_json(record, "release record")["version"]  # only its version matters here
            key = semver.parse(released)
        except (D4CError, ValueError, KeyError, TypeError):
            ctx.found.append(Finding(str(record), 1, 1, "D4C306",
                                     "not a release record with a SemVer `version`"))
            continue
        if newest is None or key > newest[0]:
            newest = (key, released)
    if newest is not None and semver.parse(version) < newest[0]:
        ctx.add("D4C305", ("version",),
                f"version {version} is below the newest release {newest[1]}; bump it above")


def check_metadata(ctx: Context) -> None:
    lic = ctx.text("license")
    if lic:
        known = spdx_ids()
        if lic not in known:
            guess = spdx_guess(lic, known)
            ctx.add("D4C401", ("license",), f"`{lic[:80]}` is not an SPDX license id"
                    + (f"; did you mean `{guess}`?" if guess else ""))
        elif known[lic]:
            ctx.add("D4C402", ("license",), f"SPDX has deprecated `{lic}`")
    for field in ("title", "description"):
        for lang in ("en", "fr"):
            value = ctx.text(field, lang)
            if value is not None and value and not value.strip():
                ctx.add("D4C403", (field, lang), f"`{field}.{lang}` is blank")
    for i, creator in ctx.items("creators"):
        orcid = creator.get("orcid")
        if isinstance(orcid, str) and _ORCID.match(orcid) and not orcid_ok(orcid):
            ctx.add("D4C404", ("creators", i, "orcid"), f"ORCID {orcid} fails its check digit")
    start, end = ctx.text("temporal", "start"), ctx.text("temporal", "end")
    if start and end and _DATE.match(start) and _DATE.match(end) and end < start:
        ctx.add("D4C405", ("temporal", "end"), f"temporal end {end} is before start {start}")
    spatial = ctx.data.get("spatial")
    bbox = spatial.get("bbox") if isinstance(spatial, dict) else None
    if isinstance(bbox, list) and len(bbox) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox
    ):
        west, south, east, north = bbox
        if not (all(-180 <= v <= 180 for v in (west, east)) and -90 <= south <= north <= 90):
            ctx.add("D4C406", ("spatial", "bbox"),
                    "bbox must be [west, south, east, north] with -180..180 and -90 <= south <= north <= 90")
    env = ctx.text("environment")
    root = ctx.root
    if env and root and re.match(r"^docker/[\w./-]+$", env) and ".." not in env and not (root / env).is_file():
        ctx.add("D4C607", ("environment",), f"{env} does not exist")
