"""SemVer 2.0.0 in one place: what a version is, how versions order, what a bump is.

Parsing and precedence come from the maintained `semver` library, which follows
semver.org section 11: numeric identifiers compare numerically and below alphanumeric
ones, a longer set of identifiers wins when all before are equal, a pre-release sorts
before its release, and build metadata is ignored. This module adds what d4c asks of
a version (a sort key with a helpful error, the newest stable one, the kind of a bump)
and `PATTERN`, the one regular expression, for embedding in key layouts and selectors.
Every other module imports from here; none parses a version itself.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Literal

from semver import Version

from d4c.errors import D4CError

__all__ = ["KINDS", "PATTERN", "InvalidVersion", "Kind", "Version", "announced", "bump",
           "is_prerelease", "is_valid", "key", "latest", "parse", "suggest"]

Kind = Literal["none", "patch", "minor", "major"]
KINDS: tuple[Kind, ...] = ("none", "patch", "minor", "major")

_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD_ID = r"[0-9A-Za-z-]+"
# semver.org's grammar without anchors or groups, to embed in a larger regex; a test holds it
# to the library's own check.
PATTERN = (rf"{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
           rf"(?:\+{_BUILD_ID}(?:\.{_BUILD_ID})*)?")


class InvalidVersion(D4CError, ValueError):
    """Not a SemVer 2.0.0 version; a ValueError too, so parsers' callers may catch either."""

    def __init__(self, text: object):
        super().__init__(f"version {text!r} is not SemVer",
                         hint="use MAJOR.MINOR.PATCH, e.g. 1.2.0, or 2.0.0-rc.1 for a pre-release")


def is_valid(text: object) -> bool:
    return isinstance(text, str) and _valid(text)


@functools.lru_cache(maxsize=65536)  # a plan asks once per matrix row; versions repeat
def _valid(text: str) -> bool:
    return bool(Version.is_valid(text))


@functools.lru_cache(maxsize=65536)  # versions repeat across datasets, and sorting asks often
def parse(text: str) -> Version:
    """The version, or InvalidVersion. Versions compare by SemVer precedence."""
    if not is_valid(text):
        raise InvalidVersion(text)
    return Version.parse(text)


def key(text: str) -> Version:
    """Sort key giving SemVer precedence: `sorted(versions, key=semver.key)`."""
    return parse(text)


def is_prerelease(text: str) -> bool:
    return parse(text).prerelease is not None


def latest(versions: Iterable[str]) -> str | None:
    """The newest stable version, else (only pre-releases) the newest pre-release."""
    ordered = sorted(versions, key=key)
    stable = [v for v in ordered if not is_prerelease(v)]
    return (stable or ordered)[-1] if ordered else None


def announced(text: str) -> Kind:
    """The bump a version's MAJOR.MINOR.PATCH announces: X.0.0 major, X.Y.0 minor, else patch.

    What a pre-release promises: 2.0.0-rc.1 is a step towards a major release, so its
    release (and any later pre-release of it) may carry a major change.
    """
    v = parse(text)
    if v.minor == 0 and v.patch == 0:
        return "major"
    return "minor" if v.patch == 0 else "patch"


def bump(old: str, new: str) -> Kind | Literal["downgrade"]:
    """The kind of the step from `old` to `new`, or "downgrade" when `new` sorts lower.

    Between releases it is the highest of MAJOR.MINOR.PATCH that grew. From a pre-release
    it is at least what the pre-release announced, so 2.0.0-rc.1 -> 2.0.0 is a major bump
    (the one the pre-release was for), not `none`.
    """
    a, b = parse(old), parse(new)
    if b < a:
        return "downgrade"
    kind: Kind = "none"
    if b.major > a.major:
        kind = "major"
    elif b.minor > a.minor:
        kind = "minor"
    elif b.patch > a.patch:
        kind = "patch"
    if a.prerelease is not None and b > a:
        kind = max(kind, announced(old), key=KINDS.index)
    return kind


def suggest(old: str, kind: str) -> str:
    """The smallest release after `old` whose bump covers a `kind` change."""
    v = parse(old)
    core = v.finalize_version()
    if v.prerelease is not None and KINDS.index(announced(old)) >= KINDS.index(kind):
        return str(core)  # release the pre-release
    if kind == "major":
        return str(core.bump_major())
    if kind == "minor":
        return str(core.bump_minor())
    return str(core.bump_patch())
