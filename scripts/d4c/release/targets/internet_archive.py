"""`internet-archive`: one archive.org item per dataset version, written through IA-S3.

The item identifier comes from a template (default `{id}_v{version}`), sanitized to the
characters IA allows. Item metadata travels as `x-archive-meta-*` headers on the PUT
that creates the item (IA ignores them afterwards); derivation is switched off
(`x-archive-queue-derive: 0`); `Content-MD5` makes IA refuse damaged bytes; 503
SlowDown is retried by the shared session honouring Retry-After (capped). Reads use
the public metadata API (md5/sha1 per file), whose file list lags the upload while
IA's tasks run, so verify() waits a bounded time. Options: `identifier`, `s3_url`
(https://s3.us.archive.org), `archive_url` (https://archive.org), `collection`,
`mediatype` (data), `settle_seconds` (120). Credentials: `access`, `secret`.
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import requests

from d4c import http
from d4c.errors import D4CError
from d4c.redact import redact
from d4c.release.targets.base import BaseTarget, ReleaseContext, ReleaseFile, TargetConfig

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]+")


def identifier(template: str, dataset_id: str, version: str) -> str:
    """An IA identifier: letters, digits, `.`, `_`, `-`; starts alphanumeric; at most 100 chars."""
    ident = _NOT_ALLOWED.sub("-", template.format(id=dataset_id, version=version)).lstrip("._-")
    if not ident or len(ident) > 100:
        raise D4CError(f"internet-archive identifier {ident!r} must be 1 to 100 characters",
                       hint="shorten options.identifier (default '{id}_v{version}')")
    return ident


def _header_value(value: str) -> str:
    # Header values must be ASCII: IA decodes uri(<percent-encoded UTF-8>).
    return value if value.isascii() and "\n" not in value else f"uri({quote(value, safe='')})"


class InternetArchiveTarget(BaseTarget):
    kind = "internet-archive"
    CREDENTIALS: ClassVar[Mapping[str, str]] = {"access": "IA_ACCESS_KEY", "secret": "IA_SECRET_KEY"}
    KEEPS_EVERY_VERSION = "archive.org items are kept for every version"
    REPLACE_ADVICE = ("d4c does not rewrite an Internet Archive item: upload a copy that passed "
                      "over that file of the item (an IA-S3 PUT), then rerun the check")
    SOURCES_IN_VERSION = True

    def __init__(self, config: TargetConfig, environ: Mapping[str, str] | None = None):
        super().__init__(config, environ)
        opts = config.options
        self.template = str(opts.get("identifier", "{id}_v{version}"))
        self.s3 = str(opts.get("s3_url", "https://s3.us.archive.org")).rstrip("/")
        self.archive = str(opts.get("archive_url", "https://archive.org")).rstrip("/")
        self.collection = opts.get("collection")
        self.mediatype = str(opts.get("mediatype", "data"))
        self.settle_seconds = float(opts.get("settle_seconds", 120))
        self._session: requests.Session | None = None
        self._reader = http.session()  # public reads carry no credentials
        self._files: list[ReleaseFile] = []
        self._meta: dict[str, str] = {}  # item metadata headers, sent with the creating PUT

    def _http(self) -> requests.Session:
        if self._session is None:
            access, secret = self.credential("access"), self.credential("secret")  # archive.org/account/s3.php
            self._session = http.session()
            self._session.headers["Authorization"] = f"LOW {access}:{secret}"
        return self._session

    def _call(self, method: str, url: str, ok: tuple[int, ...] = (200,), auth: bool | None = None,
              **kw: Any) -> requests.Response:
        # public reads carry no keys; writes (and `auth`) do
        session = self._http() if (method != "GET" if auth is None else auth) else self._reader
        resp = self.send(session, method, url, url, **kw)
        if resp.status_code not in ok:
            code = re.search(r"<Code>(.*?)</Code>", resp.text)
            raise D4CError(f"target {self.name!r}: {method} {url} answered {resp.status_code}"
                           + (f" {code[1]}" if code else "") + f": {redact(resp.text[:200])}",
                           hint="check the IA-S3 keys and that the identifier is yours")
        return resp

    # -- keys and URLs --------------------------------------------------------------------
    def key_for(self, dataset_id: str, version: str, file: str) -> str:
        return f"{identifier(self.template, dataset_id, version)}/{file}"

    def public_url(self, key: str) -> str:
        if self.config.url != "{key}":
            return super().public_url(key)
        return f"{self.archive}/download/{quote(key, safe='/~-._')}"

    # -- lifecycle ------------------------------------------------------------------------
    def prepare(self, ctx: ReleaseContext) -> dict[str, Any]:
        self._files = ctx.files
        self._meta = self._item_headers(ctx)
        ident = identifier(self.template, ctx.dataset_id, ctx.version)
        if ctx.dry_run:
            return {}
        self._http()  # missing keys fail here, before any upload anywhere
        self._own_item(ctx, ident)
        return {"ia_item": f"{self.archive}/details/{ident}"}

    def probe(self, ctx: ReleaseContext) -> list[str]:
        """IA-S3 `GET /` with the keys (lists the caller's items: the keys work), then the
        item: absent, or this release's (an item of something else is an error)."""
        self._files = ctx.files
        self._meta = self._item_headers(ctx)
        self._call("GET", f"{self.s3}/", auth=True)
        ident = identifier(self.template, ctx.dataset_id, ctx.version)
        return [f"item {ident} exists" if self._own_item(ctx, ident) else f"item {ident} is made by the first upload"]

    def _own_item(self, ctx: ReleaseContext, ident: str) -> bool:
        """True when the item exists and is this release's; an error when it is another's."""
        meta = self._item(ident).get("metadata") or {}
        if meta and meta.get("d4c-dataset") != f"{ctx.dataset_id}/v{ctx.version}":
            raise D4CError(f"target {self.name!r}: archive.org item {ident} exists and is not this release",
                           hint="choose another options.identifier template")
        return bool(meta)

    def _item_headers(self, ctx: ReleaseContext) -> dict[str, str]:
        r = ctx.recipe
        title, desc = r.get("title") or {}, r.get("description") or {}
        meta: dict[str, str] = {
            "x-archive-meta-mediatype": self.mediatype,
            "x-archive-meta-title": f"{title.get('en', ctx.dataset_id)} v{ctx.version}",
            "x-archive-meta-description": str(desc.get("en", "")).strip(),
            "x-archive-meta-version": ctx.version,
            "x-archive-meta-d4c-dataset": f"{ctx.dataset_id}/v{ctx.version}",
            "x-archive-meta-language": "eng",
        }
        if title.get("fr"):
            meta["x-archive-meta-title-fr"] = str(title["fr"])
            meta["x-archive-meta-description-fr"] = str(desc.get("fr", "")).strip()
        if r.get("license"):
            meta["x-archive-meta-licenseurl"] = f"https://spdx.org/licenses/{r['license']}.html"
        if self.collection:
            meta["x-archive-meta-collection"] = str(self.collection)
        for i, c in enumerate(r.get("creators") or [], 1):
            meta[f"x-archive-meta{i:02d}-creator"] = str(c["name"])
        for i, kw in enumerate(r.get("keywords") or [], 1):
            meta[f"x-archive-meta{i:02d}-subject"] = str(kw)
        return {k: _header_value(v) for k, v in meta.items()}

    # -- files ----------------------------------------------------------------------------
    def _item(self, ident: str) -> dict[str, Any]:
        return dict(self._call("GET", f"{self.archive}/metadata/{quote(ident)}").json() or {})

    def _entry(self, key: str) -> tuple[bool, dict[str, Any] | None]:
        """(item exists?, this file's entry in the item's file list)."""
        ident, _, name = key.partition("/")
        item = self._item(ident)
        files = {f.get("name"): f for f in item.get("files") or []}
        return bool(item), files.get(name)

    def _matches(self, key: str, entry: Mapping[str, Any], sha256: str) -> bool:
        known = {f.sha256: f.md5 for f in self._files}
        if sha256 in known:
            return entry.get("md5") == known[sha256]
        # not one of this release's files: hash the served bytes
        resp = self._call("GET", f"{self.archive}/download/{quote(key, safe='/~-._')}", stream=True)
        h = hashlib.sha256()
        for chunk in resp.iter_content(1 << 20):
            h.update(chunk)
        return h.hexdigest() == sha256

    def exists(self, key: str, sha256: str) -> bool:
        _, entry = self._entry(key)
        if entry is None:
            return False
        if not self._matches(key, entry, sha256):
            raise D4CError(f"target {self.name!r}: {key} exists on archive.org with different content",
                           hint="a published file is immutable: bump the version")
        return True

    def upload(self, key: str, path: Path, sha256: str, md5: str) -> None:
        item_exists, _ = self._entry(key)
        headers = {"x-archive-auto-make-bucket": "1", "x-archive-queue-derive": "0",
                   "x-archive-size-hint": str(path.stat().st_size),
                   "Content-MD5": base64.b64encode(bytes.fromhex(md5)).decode(),
                   "Content-Type": "application/octet-stream"}
        if not item_exists:
            headers.update(self._meta)
        url = f"{self.s3}/{quote(key, safe='/~-._')}"
        for _ in range(4):
            with path.open("rb") as fh:
                resp = self._call("PUT", url, ok=(200, 307), data=fh, headers=headers, allow_redirects=False)
            if resp.status_code == 200:
                return
            # IA sends a PUT on to a storage node with 307; requests would drop the LOW
            # credentials on a host change, so follow it here, and only within archive.org.
            url = urljoin(url, resp.headers.get("Location", ""))
            host = urlsplit(url).hostname or ""
            if host != urlsplit(self.s3).hostname and not host.endswith(".archive.org"):
                raise D4CError(f"target {self.name!r}: IA-S3 redirected {key} to {host}",
                               hint="check options.s3_url")
        raise D4CError(f"target {self.name!r}: too many redirects for {key}", hint="retry later")

    def verify(self, key: str, sha256: str) -> bool:
        deadline = time.monotonic() + self.settle_seconds
        delay = 0.2
        while True:
            _, entry = self._entry(key)
            if entry is not None:
                return self._matches(key, entry, sha256)
            if time.monotonic() + delay > deadline:
                return False  # IA's task has not listed it yet: a rerun checks again
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def delete_older_versions(self, dataset_id: str, keep_version: str) -> list[str]:
        return []  # retain: all is enforced in __init__
