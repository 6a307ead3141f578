"""The Target Protocol every publishing kind implements, and a base class with the shared parts.

A kind is one module in `d4c.release.targets` and one entry in `KINDS`. The release
(`d4c.release.plan` then `d4c.release.orchestrate`) drives every target through the same calls.
First the plan, which only reads:

    t.missing_credentials()             every required variable that is unset (no network)
    t.probe(ctx)                        reachable, and allowed to write? (a HEAD, a GET, a
                                        harmless authenticated call); notes what is there
    t.look(key, sha)                    per file: "present" or "absent" (raises on a key
                                        that holds other bytes)

then, only when the whole plan is possible, the run:

    t.prepare(ctx)                      once per run, before any upload: look at the world,
                                        create/reuse what the release needs (zenodo: the new
                                        version draft + reserved DOI; github: the draft
                                        release). Returns facts for the record, e.g.
                                        {"doi": "...", "concept_doi": "...", "record_id": "..."}.
    t.exists(key, sha) / t.upload(...)  per file: look before you write (up to
                                        t.upload_slots files at once, each in a thread)
    t.verify(key, sha)                  after every upload, before any cleanup
    t.delete_older_versions(id, ver)    only for retain: latest, only after verify
    t.finalize(ctx)                     publish (zenodo publish, github un-draft). Returns
                                        facts for the record, e.g. {"github_release": url}.

Outside a release, `d4c mirrors repair` puts a damaged copy back with

    t.replace(key, path, sha, md5)      the stores (REPLACES): ours at `key` whatever is
                                        there now, verified after the write like an
                                        upload; the services raise, with REPLACE_ADVICE

Every call must be idempotent: a rerun after a crash at any point calls them again
in the same order, and each must re-read state and decide instead of blindly
re-sending a create or publish. `ctx.state` carries what this target returned from
`prepare`/`finalize` on earlier runs (from the journal) as a hint, never as truth.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable
from urllib.parse import quote

import requests

from d4c import http, semver
from d4c.errors import D4CError
from d4c.redact import register_secret

Retain = Literal["all", "latest"]
DEFAULT_LAYOUT = "{id}/v{version}/{file}"
SOURCE_PREFIX = "sources/sha256"


@dataclass(frozen=True)
class TargetConfig:
    """One entry of the targets config, resolved (see `d4c.release.config`)."""

    kind: str
    name: str
    url: str  # public URL template with `{key}` (percent-encoded by public_url)
    layout: str = DEFAULT_LAYOUT
    retain: Retain = "all"
    source_mirror: bool = False
    credentials: Mapping[str, str] = field(default_factory=dict)  # role -> env var NAME
    public: bool = True  # its URLs must answer anonymous reads (checked after upload)
    source_prefix: str | None = None  # raw sources' key prefix; None: default_source_prefix(layout)
    options: Mapping[str, Any] = field(default_factory=dict)  # kind-specific


@dataclass(frozen=True)
class ReleaseFile:
    """One file a release publishes (artifact, torrent, manifest, provenance, bundle)."""

    role: str  # data | torrent | manifest | provenance | bundle | source (a service's copy)
    name: str  # output name, or the role for the others
    file: str  # file name as published
    path: Path
    size: int
    sha256: str
    md5: str
    media_type: str


@dataclass
class ReleaseContext:
    """What a target's lifecycle hooks get: the release, the other mirrors, earlier results."""

    dataset_id: str
    version: str
    recipe: Mapping[str, Any]  # the recipe data (titles, creators, license, keywords...)
    manifest: Mapping[str, Any]
    files: list[ReleaseFile]
    urls: dict[str, dict[str, str]]  # target name -> file name -> public URL (all targets)
    state: dict[str, Any] = field(default_factory=dict)  # this target's journal entry
    dry_run: bool = False
    # Call after each remote change a hook makes (e.g. "zenodo: draft created"): tests use it
    # to crash the run right after every side effect and prove the rerun converges.
    on_side_effect: Callable[[str], None] = field(default=lambda what: None)

    @property
    def tag(self) -> str:
        return f"{self.dataset_id}/v{self.version}"


@runtime_checkable
class Target(Protocol):
    name: str
    kind: str
    retain: Retain
    source_mirror: bool
    public: bool
    upload_slots: int  # files of one release uploaded to it at once
    guards_create: bool  # upload() itself refuses to replace a key (so no look just before)
    REPLACES: ClassVar[bool]
    REPLACE_ADVICE: ClassVar[str]

    def key_for(self, dataset_id: str, version: str, file: str) -> str: ...
    def public_url(self, key: str) -> str: ...
    def source_key(self, sha256: str) -> str: ...
    def source_key_for(self, dataset_id: str, version: str, sha256: str) -> str: ...
    def lookup(self) -> dict[str, str] | None: ...
    def storage_uri(self, key: str) -> str | None: ...
    def exists(self, key: str, sha256: str) -> bool: ...  # present AND intact
    def upload(self, key: str, path: Path, sha256: str, md5: str) -> None: ...
    def verify(self, key: str, sha256: str) -> bool: ...
    def delete_older_versions(self, dataset_id: str, keep_version: str) -> list[str]: ...
    def prepare(self, ctx: ReleaseContext) -> dict[str, Any]: ...
    def finalize(self, ctx: ReleaseContext) -> dict[str, Any]: ...
    def missing_credentials(self) -> list[D4CError]: ...
    def probe(self, ctx: ReleaseContext) -> list[str]: ...
    def look(self, key: str, sha256: str) -> str: ...
    def replace(self, key: str, path: Path, sha256: str, md5: str) -> None: ...


@runtime_checkable
class StateStore(Protocol):
    """A target that can also hold the mutable release journal (local, s3)."""

    def read_state(self, key: str) -> bytes | None: ...
    def write_state(self, key: str, data: bytes, content_type: str = "application/json") -> None: ...


def source_key(sha256: str, prefix: str = SOURCE_PREFIX) -> str:
    """The content-addressed key of a raw source on a source mirror: <prefix>/<aa>/<hash>."""
    return f"{prefix.strip('/')}/{sha256[:2]}/{sha256}"


def source_file_name(sha256: str) -> str:
    """A raw source's file name in a service's deposit: named by its hash, never by a name
    from the recipe (that could collide with an artifact's)."""
    return f"source-{sha256}"


def default_source_prefix(layout: str) -> str:
    """Raw sources sit beside the layout's fixed head: `dataforcanada/{id}/...` gives
    `dataforcanada/sources/sha256`, the default `{id}/v{version}/{file}` gives `sources/sha256`."""
    head = layout.split("{", 1)[0]
    return head[:head.rfind("/") + 1] + SOURCE_PREFIX


class BaseTarget:
    """Shared behaviour: layout keys, public URLs, credentials, no-op lifecycle hooks.

    Credentials are the one place tokens are handled: a kind declares the roles it needs
    and their default variables (`CREDENTIALS`, `OPTIONAL`); the config may name others
    under `credentials`. Every value is masked from the moment the target exists, and a
    plan asks `missing_credentials()` of every target before anything reaches a network.
    """

    kind = "base"
    CREDENTIALS: ClassVar[Mapping[str, str]] = {}  # role -> default environment variable
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()  # roles that may stay unset
    KEEPS_EVERY_VERSION: ClassVar[str] = ""  # why a kind refuses retain: latest
    # A service (Zenodo, the Internet Archive, GitHub) holds one deposit per version, so its
    # copy of a raw source is a file of that deposit, `source-<sha256>`, not a shared key.
    SOURCES_IN_VERSION: ClassVar[bool] = False
    URLS_FROM_CONFIG: ClassVar[bool] = True  # False: a URL exists only once prepare() ran
    # A store can put our bytes back over a damaged copy (`replace`); a service's published
    # deposit is not rewritten in place, and REPLACE_ADVICE says what the operator can do.
    REPLACES: ClassVar[bool] = False
    REPLACE_ADVICE: ClassVar[str] = "repair it by hand"
    # One file at a time unless a kind says otherwise: the services limit request rates and
    # drafts; a store (s3) takes its own `parallel_uploads` option.
    upload_slots: int = 1
    guards_create: bool = False

    def __init__(self, config: TargetConfig, environ: Mapping[str, str] | None = None):
        self.config = config
        self.name = config.name
        self.retain: Retain = config.retain
        self.source_mirror = config.source_mirror
        self.public = config.public
        self.source_prefix = (config.source_prefix or default_source_prefix(config.layout)).strip("/")
        self.environ = os.environ if environ is None else environ
        if self.KEEPS_EVERY_VERSION and config.retain != "all":
            raise D4CError(f"target {self.name!r}: {self.KEEPS_EVERY_VERSION}",
                           hint=f"use retain: all for a {self.kind} target")
        self._known_roles()
        for var in self.credential_vars().values():
            register_secret(self.environ.get(var))

    def roles(self) -> frozenset[str]:
        """The credential roles this kind reads."""
        return frozenset(self.CREDENTIALS) | self.OPTIONAL

    def _known_roles(self) -> None:
        """A role this kind never reads is a typo: its variable would be ignored, and the plan
        would ask for the default variable instead (the outsider's `acces_key_id`)."""
        import difflib

        known = sorted(self.roles())
        for role in sorted(self.config.credentials):
            if role not in known:
                near = difflib.get_close_matches(role, known, n=1)
                guess = f"did you mean {near[0]!r}?" if near else \
                    f"a {self.kind} target reads {', '.join(known) or 'no credential'}"
                raise D4CError(f"target {self.name!r}: unknown credential role {role!r}; {guess}",
                               hint="see docs/operators.md for each kind's credentials")

    def credential_vars(self) -> dict[str, str]:
        """role -> the environment variable that holds it (the config's name, else the default)."""
        return {**self.CREDENTIALS, **self.config.credentials}

    def missing_credentials(self) -> list[D4CError]:
        """One error per required credential whose variable is unset or empty."""
        return [self._unset(role, var) for role, var in sorted(self.credential_vars().items())
                if role not in self.OPTIONAL and not self.environ.get(var)]

    def _unset(self, role: str, var: str) -> D4CError:
        return D4CError(f"target {self.name!r}: environment variable {var} is not set "
                        f"(credential {role!r})",
                        hint=f"export {var}, or name another variable under credentials.{role}")

    def key_for(self, dataset_id: str, version: str, file: str) -> str:
        return self.config.layout.format(id=dataset_id, version=version, file=file)

    def public_url(self, key: str) -> str:
        # Percent-encode once here so torrents and records carry usable URLs as-is.
        return self.config.url.format(key=quote(key, safe="/~-._"))

    def source_key(self, sha256: str) -> str:
        return source_key(sha256, self.source_prefix)

    def storage_uri(self, key: str) -> str | None:
        """The object's address in its store (s3://bucket/key), beside its public URL."""
        return None

    def lookup(self) -> dict[str, str] | None:
        """For a kind whose URLs exist only after prepare(): how to find them later, anonymously
        (written into the bundle's mirrors.json). None when the config fixes every URL."""
        return None

    def source_key_for(self, dataset_id: str, version: str, sha256: str) -> str:
        """Where this target keeps a release's raw source: the content-addressed key shared
        by every version, or for a service a file of this version's deposit."""
        if self.SOURCES_IN_VERSION:
            return self.key_for(dataset_id, version, source_file_name(sha256))
        return self.source_key(sha256)

    def credential(self, role: str, required: bool = True) -> str | None:
        """The value of the variable for `role`; errors name the variable, never the value."""
        var = self.credential_vars().get(role)
        value = self.environ.get(var) if var else None
        if required and not value:
            raise self._unset(role, var) if var else D4CError(
                f"target {self.name!r}: no environment variable named for credential {role!r}",
                hint=f"name one under credentials.{role}")
        return value

    def send(self, session: requests.Session, method: str, url: str, label: str,
             **kw: Any) -> requests.Response:
        """One HTTP request of a service kind; a transport error names the target, never a token."""
        try:
            return session.request(method, url, **kw)
        except requests.RequestException as exc:
            raise D4CError(f"target {self.name!r}: {method} {label}: {http.describe(exc)}",
                           hint="rerun `d4c release`: it resumes from what is already there") from None

    def probe(self, ctx: ReleaseContext) -> list[str]:
        """Read only: prove the target is reachable and these credentials may write there
        (a HEAD, a GET, a harmless authenticated call), and say what this release finds
        already there. Raises D4CError when the release could not succeed here."""
        return []

    def look(self, key: str, sha256: str) -> str:
        """Read only: what is at `key` now: "present" (our bytes) or "absent". A key that
        holds other bytes raises (published keys are immutable)."""
        return "present" if self.exists(key, sha256) else "absent"

    def exists(self, key: str, sha256: str) -> bool:
        raise NotImplementedError

    def replace(self, key: str, path: Path, sha256: str, md5: str) -> None:
        """Put our bytes at `key` over whatever is there (a damaged copy), then verify."""
        raise D4CError(f"target {self.name!r}: a {self.kind} copy is not replaced in place",
                       hint=self.REPLACE_ADVICE)

    def replaced(self, key: str, sha256: str) -> None:
        """The release's guarantee after a replace: the key holds our bytes, or one error."""
        if not self.verify(key, sha256):
            raise D4CError(f"target {self.name!r}: {key} does not match sha256 {sha256} after "
                           "the repair", hint="the store did not keep the bytes; rerun `d4c mirrors repair`")

    def verify(self, key: str, sha256: str) -> bool:
        raise NotImplementedError

    def prepare(self, ctx: ReleaseContext) -> dict[str, Any]:
        return {}

    def finalize(self, ctx: ReleaseContext) -> dict[str, Any]:
        return {}

    def older_version_keys(self, keys: Iterable[str], dataset_id: str, keep_version: str) -> list[str]:
        """Keys of `dataset_id` in this layout whose version `keep_version` supersedes.

        That is every version of lower SemVer precedence, except that a pre-release keeps
        the newest release below it (2.0.0-rc.1 does not replace 1.4.0 for users); a
        version above `keep_version` (a backport was released) is never touched. The
        version is read from the layout's `{version}` or, for layouts without it (e.g.
        `dataforcanada/{id}/processed/{file}`), from the `<id>_v<version>` file name.
        """
        pattern = _layout_regex(self.config.layout, dataset_id)
        found: dict[str, str] = {}
        for key in keys:
            m = pattern.fullmatch(key)
            if not m:
                continue
            version = m.groupdict().get("version")
            if version is None:
                fm = re.match(re.escape(dataset_id) + r"_v(" + semver.PATTERN + r")(?:[_.])", m["file"])
                version = fm.group(1) if fm else None
            if version is not None:
                found[key] = version
        keep = semver.key(keep_version)
        below = {v for v in found.values() if semver.key(v) < keep}
        if semver.is_prerelease(keep_version):
            below.discard(semver.latest(v for v in below if not semver.is_prerelease(v)) or "")
        return sorted(k for k, v in found.items() if v in below)

    def listing_prefix(self, dataset_id: str) -> str:
        """The longest fixed key prefix that holds every version of a dataset."""
        head = re.split(r"\{(?:version|file)\}", self.config.layout, maxsplit=1)[0]
        return head.format(id=dataset_id)


def _layout_regex(layout: str, dataset_id: str) -> re.Pattern[str]:
    parts = re.split(r"(\{id\}|\{version\}|\{file\})", layout)
    rx = []
    seen: set[str] = set()
    for part in parts:
        if part == "{id}":
            rx.append(re.escape(dataset_id))
        elif part in ("{version}", "{file}") and part[1:-1] not in seen:
            seen.add(part[1:-1])
            rx.append(f"(?P<version>{semver.PATTERN})" if part == "{version}" else r"(?P<file>[^/]+)")
        elif part in ("{version}", "{file}"):
            rx.append(f"(?P={part[1:-1]})")
        else:
            rx.append(re.escape(part))
    return re.compile("".join(rx))
