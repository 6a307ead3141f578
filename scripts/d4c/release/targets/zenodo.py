"""`zenodo`: one Zenodo (InvenioRDM) record per dataset version, all versions of a dataset
under one concept record, the version DOI reserved before upload so it can go into the
metadata.

Every step looks first: the draft of this version is found by an alternate identifier
`urn:d4c:<id>:<version>` (search) or the journal hint; the concept by the previous
release record or `urn:d4c:<id>`; files already committed with our md5 are skipped; a
publish whose answer was lost is re-read, never re-sent blindly. Options: `base_url`
(https://zenodo.org or https://sandbox.zenodo.org), `max_files`, `max_bytes`.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from d4c import http, model, paths, semver
from d4c.errors import D4CError
from d4c.redact import redact
from d4c.release.targets.base import BaseTarget, ReleaseContext, ReleaseFile, TargetConfig

log = logging.getLogger(__name__)

MAX_FILES = 100
MAX_BYTES = 50 * 10**9  # Zenodo's per-record quota


class ZenodoTarget(BaseTarget):
    kind = "zenodo"
    CREDENTIALS: ClassVar[Mapping[str, str]] = {"token": "ZENODO_TOKEN"}
    KEEPS_EVERY_VERSION = "zenodo records are permanent archives"
    SOURCES_IN_VERSION = True
    URLS_FROM_CONFIG = False  # /records/<id>/files/...: the id comes from prepare()
    REPLACE_ADVICE = ("published Zenodo records are immutable: ask Zenodo support to restore the "
                      "file (it keeps the md5 our manifest records), or release a new version; "
                      "the other copies serve meanwhile")

    def __init__(self, config: TargetConfig, environ: Mapping[str, str] | None = None):
        super().__init__(config, environ)
        opts = config.options
        self.base = str(opts.get("base_url", "https://zenodo.org")).rstrip("/")
        self.max_files = int(opts.get("max_files", MAX_FILES))
        self.max_bytes = int(opts.get("max_bytes", MAX_BYTES))
        self.retry_wait_max = float(opts.get("retry_wait_max", 60))
        # Zenodo's search index trails writes by about a second: look twice before a create.
        self.index_lag = float(opts.get("index_lag_seconds", 2))
        self._session: requests.Session | None = None
        self.record_id: str | None = None
        self._md5: dict[str, str] = {}  # sha256 -> md5 of files this run uploaded
        self._files: list[ReleaseFile] = []  # the release's files (torrents join later)

    # -- HTTP -----------------------------------------------------------------------------
    def _http(self) -> requests.Session:
        if self._session is None:
            token = self.credential("token")
            self._session = http.session()
            self._session.headers["Authorization"] = f"Bearer {token}"
        return self._session

    def _call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else f"{self.base}/api{path}"

        def send() -> requests.Response:
            return self.send(self._http(), method, url, path, **kw)

        # A 429 was refused before being applied, so even a POST may be sent again (the
        # session already retries idempotent methods).
        resp = http.send_while_refused(
            send, lambda r: r.status_code == 429 and method in ("POST", "PATCH"),
            wait_max=self.retry_wait_max)
        if resp.status_code not in ok:
            try:
                msg = str(resp.json().get("message", ""))
            except ValueError:
                msg = resp.text[:200]
            raise D4CError(f"target {self.name!r}: {method} {path} answered {resp.status_code}: {redact(msg)}",
                           hint="check the token's scopes (deposit:write, deposit:actions) and the record")
        return resp

    # -- keys and URLs --------------------------------------------------------------------
    def key_for(self, dataset_id: str, version: str, file: str) -> str:
        return file  # a record is one version: files are flat

    def lookup(self) -> dict[str, str] | None:
        """How a bundle says where this target's copies will be: by search (published_files)."""
        return {"kind": "zenodo", "base_url": self.base}

    def public_url(self, key: str) -> str:
        # The record id exists only once prepare() found or made the draft; before that (a
        # dry-run plan) the URL shows where the id goes.
        record = self.record_id or "{record_id}"
        return f"{self.base}/records/{record}/files/{quote(key, safe='~-._')}?download=1"

    # -- the plan: reads only -------------------------------------------------------------
    def probe(self, ctx: ReleaseContext) -> list[str]:
        """The limits, then the user's records (an authenticated GET: the token works):
        is there already a draft or a record of this version?"""
        self._check_limits(ctx)
        self._files = ctx.files
        hits = self._version_hits(ctx)
        rec = hits[0] if hits else self._hinted(ctx)
        if rec is None:
            return ["no record of this version yet: prepare makes a draft and reserves its DOI"]
        self.record_id = str(rec["id"])
        state = "published record" if rec.get("is_published") else "draft"
        return [f"{state} {rec['id']} of this version exists" + (
            f" (and {len(hits) - 1} duplicate draft(s) that prepare discards)" if len(hits) > 1 else "")]

    def look(self, key: str, sha256: str) -> str:
        return "absent" if self.record_id is None else super().look(key, sha256)

    # -- lifecycle ------------------------------------------------------------------------
    def prepare(self, ctx: ReleaseContext) -> dict[str, Any]:
        self._check_limits(ctx)
        self._files = ctx.files
        if ctx.dry_run:
            return {}
        rec = self._find_version(ctx)
        concept = None if rec else self._find_concept(ctx)
        if rec is None and concept is None and self.index_lag > 0:
            time.sleep(self.index_lag)  # a draft made just before a crash may not be indexed yet
            rec = self._find_version(ctx)
        if rec is None:
            if concept is None:
                rec = self._call("POST", "/records", json=self._body(ctx, None)).json()
            else:  # the server hands back the pending new-version draft if there is one
                rec = self._call("POST", f"/records/{concept}/versions").json()
            ctx.on_side_effect(f"{self.name}: draft {rec['id']} created")
        self.record_id = str(rec["id"])
        if not rec.get("is_published"):
            rec = self._call("PUT", f"/records/{self.record_id}/draft", json=self._body(ctx, rec)).json()
            ctx.on_side_effect(f"{self.name}: draft metadata")
            names = {f.file for f in ctx.files}
            for key in list(self._entries(all_states=True)):  # a reused draft may hold other files
                if key not in names:
                    self._call("DELETE", f"/records/{self.record_id}/draft/files/{quote(key)}", ok=(204,))
                    ctx.on_side_effect(f"{self.name}: stale file {key} removed")
            if not (rec.get("pids") or {}).get("doi"):
                rec = self._call("POST", f"/records/{self.record_id}/draft/pids/doi").json()
                ctx.on_side_effect(f"{self.name}: DOI reserved")
        return self._facts(rec)

    def finalize(self, ctx: ReleaseContext) -> dict[str, Any]:
        if ctx.dry_run:
            return {}
        self.record_id = self.record_id or ctx.state.get("record_id")
        if self.record_id is None:
            raise D4CError(f"target {self.name!r}: no Zenodo draft to publish", hint="run prepare first")
        rec = self._state()
        if rec.get("is_published"):
            return self._facts(rec)
        self._call("PUT", f"/records/{self.record_id}/draft", json=self._body(ctx, rec))
        ctx.on_side_effect(f"{self.name}: final metadata")  # now with every mirror's URL
        entries = self._entries()
        missing = [f.file for f in ctx.files if entries.get(f.file) != f"md5:{f.md5}"]
        if missing:
            raise D4CError(f"target {self.name!r}: draft {self.record_id} lacks {', '.join(missing)}",
                           hint="rerun `d4c release`: uploads resume before publishing")
        try:
            rec = self._call("POST", f"/records/{self.record_id}/draft/actions/publish", ok=(202,)).json()
        except D4CError:
            rec = self._state()  # the answer may be lost while the publish happened: look
            if not rec.get("is_published"):
                raise
        ctx.on_side_effect(f"{self.name}: published")
        return self._facts(rec)

    # -- files ----------------------------------------------------------------------------
    def exists(self, key: str, sha256: str) -> bool:
        return self._entries().get(key) == f"md5:{self._md5_of(key, sha256)}"

    def verify(self, key: str, sha256: str) -> bool:
        return self.exists(key, sha256)

    def upload(self, key: str, path: Path, sha256: str, md5: str) -> None:
        self._md5[sha256] = md5
        entries = self._entries(all_states=True)
        files = f"/records/{self._need_id()}/draft/files"
        if entries.get(key) == f"md5:{md5}":
            return
        if key in entries and entries[key] != "pending":  # committed with other bytes: replace
            self._call("DELETE", f"{files}/{quote(key)}", ok=(204,))
        if entries.get(key) != "pending":
            self._call("POST", files, ok=(200, 201), json=[{"key": key}])
        with path.open("rb") as fh:
            self._call("PUT", f"{files}/{quote(key)}/content", data=fh,
                       headers={"Content-Type": "application/octet-stream"})
        done = self._call("POST", f"{files}/{quote(key)}/commit").json()
        if done.get("checksum") != f"md5:{md5}":
            raise D4CError(f"target {self.name!r}: {key} arrived corrupted ({done.get('checksum')})",
                           hint="rerun `d4c release` to upload it again")

    def delete_older_versions(self, dataset_id: str, keep_version: str) -> list[str]:
        return []  # retain: all is enforced in __init__; published records cannot be deleted

    # -- helpers --------------------------------------------------------------------------
    def _need_id(self) -> str:
        if self.record_id is None:
            raise D4CError(f"target {self.name!r}: no Zenodo draft yet", hint="prepare() comes first")
        return self.record_id

    def _state(self) -> dict[str, Any]:
        """This version as it is now: the draft, or the published record."""
        resp = self._call("GET", f"/records/{self._need_id()}/draft", ok=(200, 404))
        if resp.status_code == 404:
            resp = self._call("GET", f"/records/{self.record_id}")
        return dict(resp.json())

    def _entries(self, all_states: bool = False) -> dict[str, str]:
        """key -> "md5:<hex>" for committed files (or "pending" when `all_states`)."""
        resp = self._call("GET", f"/records/{self._need_id()}/draft/files", ok=(200, 404))
        if resp.status_code == 200:
            items = list(resp.json().get("entries", []))
        else:  # no draft any more: the published record lists its files
            items = list(self._call("GET", f"/records/{self.record_id}/files").json().get("entries", []))
        out = {e["key"]: e.get("checksum", "") for e in items if e.get("status") == "completed"}
        if all_states:
            out.update({e["key"]: "pending" for e in items if e.get("status") != "completed"})
        return out

    def _md5_of(self, key: str, sha256: str) -> str:
        """Zenodo reports md5 only: map our sha256 through the release's files ("" if unknown)."""
        known = {**{f.sha256: f.md5 for f in self._files}, **self._md5}
        return known.get(sha256, "")

    def _check_limits(self, ctx: ReleaseContext) -> None:
        # Torrents are made after prepare(): count one (small) per data file now.
        torrents = sum(f.role == "data" for f in ctx.files) if (ctx.recipe.get("distribution") or {}).get(
            "torrent", True) and not any(f.role == "torrent" for f in ctx.files) else 0
        count, total = len(ctx.files) + torrents, sum(f.size for f in ctx.files)
        if count > self.max_files or total > self.max_bytes:
            raise D4CError(
                f"target {self.name!r}: {count} files / {total} bytes exceed Zenodo's limits "
                f"({self.max_files} files, {self.max_bytes} bytes per record)",
                hint="ship fewer or smaller outputs, or drop zenodo from distribution.targets")

    def _search(self, q: str) -> list[dict[str, Any]]:
        hits = self._call("GET", "/user/records", params={"q": q, "allversions": "true", "size": 100})
        return list(hits.json()["hits"]["hits"])

    def _hinted(self, ctx: ReleaseContext) -> dict[str, Any] | None:
        """The journal's record of this version, if it still is one (a hint, not the truth)."""
        hint = ctx.state.get("record_id")
        if not hint:
            return None
        self.record_id = str(hint)
        try:
            rec = self._state()
        except D4CError:  # the record may be gone
            rec = {}
        self.record_id = None
        return rec if (rec.get("metadata") or {}).get("version") == ctx.version else None

    def _version_hits(self, ctx: ReleaseContext) -> list[dict[str, Any]]:
        """This version's drafts and records: published first, then the oldest."""
        hits = self._search(f'metadata.identifiers.identifier:"{_urn(ctx.dataset_id, ctx.version)}"')
        return sorted(hits, key=lambda h: (not h.get("is_published"), len(str(h["id"])), str(h["id"])))

    def _find_version(self, ctx: ReleaseContext) -> dict[str, Any] | None:
        rec = self._hinted(ctx)
        if rec is not None:
            self.record_id = str(rec["id"])
            return rec
        hits = self._version_hits(ctx)
        for extra in hits[1:]:  # duplicate drafts (a create lost in the index lag): discard them
            if not extra.get("is_published"):
                self._call("DELETE", f"/records/{extra['id']}/draft", ok=(204, 404))
                ctx.on_side_effect(f"{self.name}: duplicate draft {extra['id']} discarded")
        return hits[0] if hits else None

    def _find_concept(self, ctx: ReleaseContext) -> str | None:
        """A published record of this dataset to branch the new version from (its latest)."""
        rec_id = _previous_record_id(ctx.dataset_id, self.name)
        if rec_id is None:
            hits = [h for h in self._search(f'metadata.identifiers.identifier:"{_urn(ctx.dataset_id)}"')
                    if h.get("is_published")]
            rec_id = str(hits[0]["id"]) if hits else None
        if rec_id is None:
            return None
        latest = self._call("GET", f"/records/{rec_id}/versions/latest").json()
        return str(latest["id"])

    def _facts(self, rec: dict[str, Any]) -> dict[str, Any]:
        doi = ((rec.get("pids") or {}).get("doi") or {}).get("identifier")
        concept = (((rec.get("parent") or {}).get("pids") or {}).get("doi") or {}).get("identifier")
        return {"record_id": str(rec["id"]), "doi": doi, "concept_doi": concept,
                "zenodo_record": f"{self.base}/records/{rec['id']}"}

    def _body(self, ctx: ReleaseContext, rec: dict[str, Any] | None) -> dict[str, Any]:
        old = (rec or {}).get("metadata") or {}
        # Keep the date a draft of this version already has: reruns must not move it.
        date = old.get("publication_date") if old.get("version") == ctx.version else None
        return {"metadata": metadata(ctx, self.name, date or dt.date.today().isoformat()),
                "files": {"enabled": True}, "access": {"record": "public", "files": "public"}}


def _urn(dataset_id: str, version: str | None = None) -> str:
    return f"urn:d4c:{dataset_id}" + (f":{version}" if version else "")


def _previous_record_id(dataset_id: str, target: str) -> str | None:
    """The Zenodo record of the newest earlier release of this dataset: the `record_id` fact
    this target returned then, as its release record keeps it (releases/<id>/<v>.json)."""
    try:
        folder = paths.releases_dir() / dataset_id
    except D4CError:
        return None
    released = [p for p in folder.glob("*.json") if semver.is_valid(p.stem)]
    for path in sorted(released, key=lambda p: semver.key(p.stem), reverse=True):
        rec_id = model.load_record(path, checked=False).targets.get(target, {}).get("record_id")
        if rec_id:
            return str(rec_id)
    return None


def metadata(ctx: ReleaseContext, self_name: str, publication_date: str) -> dict[str, Any]:
    """InvenioRDM metadata from the recipe: English first, French as additional title/description."""
    r = ctx.recipe
    title, desc = dict(r.get("title") or {}), dict(r.get("description") or {})
    mirrors = sorted({url for name, urls in ctx.urls.items() if name != self_name
                      for url in urls.values() if url.startswith("http")})
    pages = sorted({m.group(1) + "/tag/" + m.group(2) for url in mirrors  # GitHub release pages
                    if (m := re.match(r"(.+/releases)/download/(.+)/[^/]+$", url))})
    related = [{"identifier": url, "scheme": "url", "relation_type": {"id": "isidenticalto"},
                "resource_type": {"id": "dataset"}} for url in mirrors]
    related += [{"identifier": page, "scheme": "url", "relation_type": {"id": "issupplementedby"}}
                for page in pages]
    return {
        "resource_type": {"id": "dataset"},
        "title": title.get("en", ctx.dataset_id),
        "additional_titles": [{"title": title["fr"], "type": {"id": "translated-title"},
                               "lang": {"id": "fra"}}] if title.get("fr") else [],
        "description": desc.get("en", ""),
        "additional_descriptions": [{"description": desc["fr"], "type": {"id": "abstract"},
                                     "lang": {"id": "fra"}}] if desc.get("fr") else [],
        "creators": [_creator(c) for c in r.get("creators") or []],
        "publication_date": publication_date,
        "version": ctx.version,
        "rights": [{"id": str(r["license"]).lower()}] if r.get("license") else [],
        "subjects": [{"subject": str(k)} for k in r.get("keywords") or []],
        "languages": [{"id": "eng"}, {"id": "fra"}],
        "publisher": "Zenodo",
        "identifiers": [{"identifier": _urn(ctx.dataset_id), "scheme": "urn"},
                        {"identifier": _urn(ctx.dataset_id, ctx.version), "scheme": "urn"}],
        "related_identifiers": related,
    }


def _creator(c: Mapping[str, Any]) -> dict[str, Any]:
    name = str(c["name"])
    personal = c.get("type") == "personal" or bool(c.get("orcid"))
    person: dict[str, Any] = {"type": "personal" if personal else "organizational", "name": name}
    if personal:
        if ", " in name:
            family, _, given = name.partition(", ")
        else:
            given, _, family = name.rpartition(" ")
        person.update(family_name=family.strip() or name, given_name=given.strip())
    if c.get("orcid"):
        orcid = str(c["orcid"]).rsplit("/", 1)[-1]
        person["identifiers"] = [{"scheme": "orcid", "identifier": orcid}]
    out: dict[str, Any] = {"person_or_org": person}
    if c.get("affiliation"):
        out["affiliations"] = [{"name": str(c["affiliation"])}]
    return out


def published_files(base_url: str, dataset_id: str, version: str) -> dict[str, str]:
    """File key -> download URL in the published record of this version, found with no token
    by its `urn:d4c:<id>:<version>` identifier: how `d4c verify` finds Zenodo's copies from a
    bundle alone (the record id did not exist when the bundle was made). {} when none."""
    base = base_url.rstrip("/")
    q = f'metadata.identifiers.identifier:"{_urn(dataset_id, version)}"'
    sess = http.session(retries=2)
    sess.auth = lambda r: r  # anonymous: never ~/.netrc
    try:
        hits = sess.get(f"{base}/api/records", params={"q": q, "size": "10"},
                        timeout=http.DEFAULT_TIMEOUT).json()["hits"]["hits"]
        for hit in hits:
            if (hit.get("metadata") or {}).get("version") != version:
                continue
            rid = str(int(hit["id"]))  # a number, never a path
            entries = sess.get(f"{base}/api/records/{rid}/files",
                               timeout=http.DEFAULT_TIMEOUT).json()["entries"]
            return {str(e["key"]): f"{base}/records/{rid}/files/{quote(str(e['key']), safe='~-._')}?download=1"
                    for e in entries}
    except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("zenodo lookup of %s %s failed: %s", dataset_id, version, exc)
    return {}
