"""SemVer precedence (semver.org section 11), so 1.10.0 sorts after 1.9.0 and 2.0.0-rc.1 before 2.0.0."""
from __future__ import annotations

import functools
import re

from d4c.errors import D4CError

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)

# A release sorts after any of its pre-releases: (1, ...) beats (0, ...).
SortKey = tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]


@functools.lru_cache(maxsize=65536)  # versions repeat across datasets; sorting calls this a lot
def version_key(version: str) -> SortKey:
    """Sort key giving SemVer precedence; build metadata is ignored, as the spec says."""
    m = _SEMVER.match(version)
    if not m:
        raise D4CError(
            f"version {version!r} is not SemVer",
            hint="use MAJOR.MINOR.PATCH, e.g. 1.2.0",
        )
    major, minor, patch, pre = int(m[1]), int(m[2]), int(m[3]), m[4]
    if pre is None:
        return (major, minor, patch, 1, ())
    # Numeric identifiers sort below alphanumeric ones, and numerically among themselves.
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, parts)


def is_prerelease(version: str) -> bool:
    return version_key(version)[3] == 0
