"""Where the copies of a release are: its sources and its source bundle, on each mirror.

A release record lists them (`sources[].urls`, `files[].urls`, per target); a source
bundle carries the same list as `mirrors.json`, written when the release was planned, so a
bundle alone says where its sources are. `d4c verify` reads either, and `--mirror NAME`
keeps one mirror's copies only: the check that any one mirror is enough.
A URL is only a place to try: every byte fetched is checked against its sha256.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from d4c import model
from d4c.errors import D4CError

MIRRORS_FILE = "mirrors.json"  # in the bundle's top folder
MIRRORS_VERSION = 1


@dataclass(frozen=True)
class Copies:
    sources: dict[str, dict[str, str]]  # source sha256 -> {mirror name: URL}
    bundle: dict[str, str]  # mirror name -> URL of the source bundle
    bundle_sha256: str | None = None

    def names(self) -> set[str]:
        return set(self.bundle).union(*self.sources.values())

    def only(self, mirror: str | None) -> Copies:
        """Just one mirror's copies; a name no copy is on is one clear line."""
        if mirror is None:
            return self
        if mirror not in self.names():
            known = ", ".join(sorted(self.names())) or "none"
            raise D4CError(f"no copy is on a mirror named {mirror!r}", hint=f"mirrors listed: {known}")
        return Copies({sha: {mirror: u[mirror]} for sha, u in self.sources.items() if mirror in u},
                      {mirror: self.bundle[mirror]} if mirror in self.bundle else {},
                      self.bundle_sha256)

    def source_urls(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """sha256 -> URLs, in a form a frozen BuildOptions can hold (http(s) first)."""
        return tuple((sha, tuple(sorted(urls.values(), key=lambda u: (not u.startswith("http"), u))))
                     for sha, urls in sorted(self.sources.items()))


def recorded(releases: Path) -> dict[str, list[str]]:
    """Every mirrored copy of a source that the dataset's release records list (sha256 ->
    URLs, newest record first): where a build finds a source once its URL is gone. A record
    that does not read is passed over; its URLs are only places to try, checked by sha256.
    A pull request can edit records, so an http(s) URL follows the recipes' rule for hosts
    (no private, link-local or metadata address; loopback is a local mirror's)."""
    from d4c.validate.checks_files import url_problem

    out: dict[str, list[str]] = {}
    for path in sorted(releases.glob("*.json"), reverse=True):
        try:
            rec = model.load_record(path, checked=False)
        except D4CError:
            continue
        for sha, urls in from_record(rec).sources.items():
            have = out.setdefault(sha, [])
            have += [u for u in sorted(urls.values(), key=lambda u: (not u.startswith("http"), u))
                     if u not in have and _fetchable(u, url_problem)]
    return out


def _fetchable(url: str, url_problem: Any) -> bool:
    if url.startswith(("file:///", "/")):  # a local target's copy: read, size-capped, hashed
        return True
    return url.startswith(("http://", "https://")) and url_problem(url, allow_loopback=True) is None


def from_record(rec: model.ReleaseRecord) -> Copies:
    bundle = next((f for f in rec.files if f.role == "bundle"), None)
    return Copies({s.sha256: dict(s.urls) for s in rec.sources if s.urls},
                  dict(bundle.urls) if bundle else {}, bundle.sha256 if bundle else None)


def mirrors_doc(sources: Iterable[Mapping[str, Any]], copies: Mapping[str, Mapping[str, str]],
                artifacts: Mapping[str, Mapping[str, str]],
                lookups: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The bundle's `mirrors.json`: each source with the mirrors that will hold it, each
    released file's URLs, as the release plan knows them before anything is uploaded, and
    for a service that assigns its URLs later (Zenodo), how to look them up."""
    return {
        "lookups": {name: dict(how) for name, how in sorted(lookups.items())},
        "mirrors_version": MIRRORS_VERSION,
        "sources": [{"name": s["name"], "sha256": s["sha256"], "size": s.get("size"),
                     "recipe_url": s.get("url"), "urls": dict(copies.get(s["sha256"], {}))}
                    for s in sources],
        "files": {name: dict(urls) for name, urls in sorted(artifacts.items())},
    }


def from_mirrors_doc(doc: Any, where: str) -> Copies:
    """Read a bundle's `mirrors.json` (untrusted: a bundle may come from anywhere)."""
    try:
        if doc.get("mirrors_version") != MIRRORS_VERSION:
            raise ValueError(f"mirrors_version {doc.get('mirrors_version')!r}")
        sources = {str(s["sha256"]): {str(k): str(v) for k, v in s["urls"].items()}
                   for s in doc["sources"]}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise D4CError(f"{where} is not a d4c mirrors list ({exc})",
                       hint="a bundle made by `d4c release` holds one; rebuild it") from None
    return Copies(sources, {})


def looked_up(doc: Any, dataset_id: str, version: str, mirror: str | None) -> Copies:
    """The sources' copies on the services a bundle's mirrors.json says to search."""
    from d4c.release.targets.base import source_file_name
    from d4c.release.targets.zenodo import published_files

    sources: dict[str, dict[str, str]] = {}
    lookups = doc.get("lookups") if isinstance(doc, dict) else None
    for name, how in (lookups or {}).items() if isinstance(lookups, dict) else ():
        if mirror not in (None, name) or not isinstance(how, dict) or how.get("kind") != "zenodo":
            continue
        base = str(how.get("base_url") or "")
        if not base.startswith(("https://", "http://")):
            continue
        files = published_files(base, dataset_id, version)
        for s in doc.get("sources") or []:
            url = files.get(source_file_name(str(s.get("sha256"))))
            if url:
                sources.setdefault(str(s["sha256"]), {})[str(name)] = url
    return Copies(sources, {})


def merged(*found: Copies) -> Copies:
    """Every copy named anywhere; a later list never hides an earlier one's URL."""
    sources: dict[str, dict[str, str]] = {}
    bundle: dict[str, str] = {}
    for c in found:
        for sha, urls in c.sources.items():
            for name, url in urls.items():
                sources.setdefault(sha, {}).setdefault(name, url)
        for name, url in c.bundle.items():
            bundle.setdefault(name, url)
    return Copies(sources, bundle, next((c.bundle_sha256 for c in found if c.bundle_sha256), None))
