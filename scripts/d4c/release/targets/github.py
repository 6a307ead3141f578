"""`github`: the release `<id>/v<version>`: created as a draft, only the missing assets
attached, then published, so it works with immutable releases (no asset may change
after publishing).

Looking first: a published release is found by tag; a draft has no tag yet, so it is
found by listing the releases. Assets are compared by the sha256 `digest` GitHub
reports. A create, upload or publish whose answer was lost is read back, never re-sent
blindly. Options: `repo` ("owner/name", required), `api_url` (https://api.github.com),
`web_url` (https://github.com); credentials.token names the env var (GITHUB_TOKEN).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import requests

from d4c import http
from d4c.errors import D4CError
from d4c.redact import redact
from d4c.release.targets.base import BaseTarget, ReleaseContext, TargetConfig

BODY_MAX = 100_000  # GitHub refuses release bodies over 125,000 characters


class GitHubTarget(BaseTarget):
    kind = "github"
    CREDENTIALS: ClassVar[Mapping[str, str]] = {"token": "GITHUB_TOKEN"}
    KEEPS_EVERY_VERSION = "GitHub releases are kept for every version"
    REPLACE_ADVICE = ("d4c does not rewrite a published GitHub release: delete that asset and "
                      "upload a copy that passed with `gh release upload`, then rerun the check")
    SOURCES_IN_VERSION = True

    def __init__(self, config: TargetConfig, environ: Mapping[str, str] | None = None):
        super().__init__(config, environ)
        opts = config.options
        self.repo = str(opts.get("repo", ""))
        if self.repo.count("/") != 1:
            raise D4CError(f"target {self.name!r}: options.repo must be 'owner/name', not {self.repo!r}",
                           hint="set options.repo in the targets config")
        self.api = str(opts.get("api_url", "https://api.github.com")).rstrip("/")
        self.web = str(opts.get("web_url", "https://github.com")).rstrip("/")
        self.retry_wait_max = float(opts.get("retry_wait_max", 60))
        self._session: requests.Session | None = None
        self.release: dict[str, Any] | None = None
        self._listing: dict[str, dict[str, Any]] = {}  # the release's assets, as the plan saw them

    # -- HTTP -----------------------------------------------------------------------------
    def _http(self) -> requests.Session:
        if self._session is None:
            token = self.credential("token")  # contents: write on the repository
            self._session = http.session()
            self._session.headers.update({"Authorization": f"Bearer {token}",
                                          "Accept": "application/vnd.github+json",
                                          "X-GitHub-Api-Version": "2022-11-28"})
        return self._session

    def _call(self, method: str, url: str, ok: tuple[int, ...] = (200, 201), **kw: Any) -> requests.Response:
        url = url if url.startswith("http") else f"{self.api}{url}"

        def send() -> requests.Response:
            return self.send(self._http(), method, url, url.split("?")[0], **kw)

        def limited(resp: requests.Response) -> bool:
            # Rate-limited requests were refused before being applied: safe to send again.
            return resp.status_code == 429 or (resp.status_code == 403 and (
                "Retry-After" in resp.headers or resp.headers.get("X-RateLimit-Remaining") == "0"))

        data: Any = kw.get("data")
        rewind = (lambda: data.seek(0)) if hasattr(data, "seek") else None  # re-send a file body
        resp = http.send_while_refused(send, limited, wait_max=self.retry_wait_max, rewind=rewind)
        if resp.status_code not in ok:
            raise D4CError(f"target {self.name!r}: {method} {url.split('?')[0]} answered "
                           f"{resp.status_code}: {redact(_message(resp))}",
                           hint="check the token (contents: write on the repository) and the release")
        return resp

    def _pages(self, path: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.api}{path}?per_page=100"
        while url:
            resp = self._call("GET", url)
            out += resp.json()
            url = resp.links.get("next", {}).get("url")
        return out

    # -- keys and URLs --------------------------------------------------------------------
    def key_for(self, dataset_id: str, version: str, file: str) -> str:
        return f"{dataset_id}/v{version}/{file}"  # the tag, then the asset name (assets are flat)

    def public_url(self, key: str) -> str:
        tag, _, name = key.rpartition("/")
        return f"{self.web}/{self.repo}/releases/download/{quote(tag, safe='/')}/{quote(name, safe='~-._')}"

    def _release_page(self, tag: str) -> str:
        return f"{self.web}/{self.repo}/releases/tag/{quote(tag, safe='/')}"

    # -- the plan: reads only -------------------------------------------------------------
    def probe(self, ctx: ReleaseContext) -> list[str]:
        """GET the repository with the token (reachable, authenticated, may it push?), then
        this tag's release and its assets, if there is one."""
        repo = self._call("GET", f"/repos/{self.repo}").json()
        perms = repo.get("permissions") if isinstance(repo, dict) else None
        if isinstance(perms, dict) and not perms.get("push"):
            raise D4CError(f"target {self.name!r}: the token may not write to {self.repo}",
                           hint="give the token contents: write on the repository")
        self.release = self._find(ctx.tag, ctx.state.get("release_id"), tidy=False)
        if self.release is None:
            return [f"no release {ctx.tag} yet: prepare makes a draft"]
        self._listing = self._assets(self.release)
        state = "draft" if self.release["draft"] else "published release"
        return [f"{state} {ctx.tag} exists with {len(self._listing)} asset(s)"]

    def look(self, key: str, sha256: str) -> str:
        tag, _, name = key.rpartition("/")
        if self.release is None or self.release.get("tag_name") != tag or name not in self._listing:
            return "absent"
        if self._sha256(self._listing[name]) == sha256:
            return "present"
        if not self.release["draft"]:
            raise D4CError(f"target {self.name!r}: published asset {key} has other bytes",
                           hint="published releases are immutable: bump the version")
        return "absent (the draft's other bytes are replaced)"

    # -- lifecycle ------------------------------------------------------------------------
    def prepare(self, ctx: ReleaseContext) -> dict[str, Any]:
        if ctx.dry_run:
            return {}
        rel = self._find(ctx.tag, ctx.state.get("release_id"))
        if rel is None:
            body = {"tag_name": ctx.tag, "name": _title(ctx), "body": _body(ctx, self.name), "draft": True}
            commit = (ctx.manifest.get("code") or {}).get("commit")
            if commit:
                body["target_commitish"] = commit
            try:
                rel = self._call("POST", f"/repos/{self.repo}/releases", json=body).json()
            except D4CError:
                rel = self._find(ctx.tag)  # the draft may exist although the answer was lost
                if rel is None:
                    raise
            ctx.on_side_effect(f"{self.name}: draft release created")
        self.release = rel
        return {"github_release": self._release_page(ctx.tag), "release_id": rel["id"]}

    def finalize(self, ctx: ReleaseContext) -> dict[str, Any]:
        if ctx.dry_run:
            return {}
        rel = self._find(ctx.tag, ctx.state.get("release_id"))
        if rel is None:
            raise D4CError(f"target {self.name!r}: no release {ctx.tag} to publish", hint="run prepare first")
        facts = {"github_release": self._release_page(ctx.tag), "release_id": rel["id"]}
        if not rel["draft"]:
            return facts
        assets = self._assets(rel)
        missing = [f.file for f in ctx.files if self._sha256(assets.get(f.file)) != f.sha256]
        if missing:
            raise D4CError(f"target {self.name!r}: release {ctx.tag} lacks {', '.join(missing)}",
                           hint="rerun `d4c release`: uploads resume before publishing")
        update = {"draft": False, "tag_name": ctx.tag, "body": _body(ctx, self.name)}
        try:
            self._call("PATCH", f"/repos/{self.repo}/releases/{rel['id']}", json=update)
        except D4CError:
            again = self._find(ctx.tag)  # a lost answer: did it publish?
            if again is None or again["draft"]:
                raise
        ctx.on_side_effect(f"{self.name}: release published")
        return facts

    # -- assets ---------------------------------------------------------------------------
    def exists(self, key: str, sha256: str) -> bool:
        rel = self._current(key)
        asset = self._assets(rel).get(key.rpartition("/")[2])
        if asset is None or self._sha256(asset) == sha256:
            return asset is not None
        if not rel["draft"]:
            raise D4CError(f"target {self.name!r}: published asset {key} has other bytes",
                           hint="published releases are immutable: bump the version")
        return False  # a draft's wrong or half-uploaded asset: upload() replaces it

    def verify(self, key: str, sha256: str) -> bool:
        return self._sha256(self._assets(self._current(key)).get(key.rpartition("/")[2])) == sha256

    def upload(self, key: str, path: Path, sha256: str, md5: str) -> None:
        rel = self._current(key)
        name = key.rpartition("/")[2]
        old = self._assets(rel).get(name)
        if old is not None and self._sha256(old) == sha256:
            return
        if old is not None:  # wrong bytes or a failed upload ("starter") block the name
            self._call("DELETE", f"/repos/{self.repo}/releases/assets/{old['id']}", ok=(204,))
        url = str(rel["upload_url"]).split("{", 1)[0]
        try:
            with path.open("rb") as fh:
                self._call("POST", url, params={"name": name}, data=fh,
                           headers={"Content-Type": "application/octet-stream"})
        except D4CError:
            if self._sha256(self._assets(rel).get(name)) != sha256:  # lost answer or 422 duplicate
                raise

    def delete_older_versions(self, dataset_id: str, keep_version: str) -> list[str]:
        return []  # retain: all is enforced in __init__

    # -- helpers --------------------------------------------------------------------------
    def _find(self, tag: str, hint: Any = None, tidy: bool = True) -> dict[str, Any] | None:
        """The published release of `tag`, else the oldest draft for it (extra drafts removed).

        `hint` (the journal's release id) spares listing every release of the repository."""
        resp = self._call("GET", f"/repos/{self.repo}/releases/tags/{quote(tag, safe='/')}", ok=(200, 404))
        if resp.status_code == 200:
            return dict(resp.json())
        if hint:
            got = self._call("GET", f"/repos/{self.repo}/releases/{int(hint)}", ok=(200, 404))
            if got.status_code == 200 and got.json().get("draft") and got.json().get("tag_name") == tag:
                return dict(got.json())
        drafts = sorted((r for r in self._pages(f"/repos/{self.repo}/releases")
                         if r.get("draft") and r.get("tag_name") == tag), key=lambda r: r["id"])
        for extra in drafts[1:] if tidy else ():  # duplicates from a crashed run: keep one draft
            self._call("DELETE", f"/repos/{self.repo}/releases/{extra['id']}", ok=(204, 404))
        return drafts[0] if drafts else None

    def _current(self, key: str) -> dict[str, Any]:
        tag = key.rpartition("/")[0]
        if self.release is None or self.release.get("tag_name") != tag:
            self.release = self._find(tag)
        if self.release is None:
            raise D4CError(f"target {self.name!r}: no release {tag} yet", hint="prepare() creates the draft")
        return self.release

    def _sha256(self, asset: Mapping[str, Any] | None) -> str | None:
        """The asset's sha256: GitHub's `digest`, or (assets from before digests) its bytes hashed."""
        if not asset or asset.get("state") != "uploaded" or asset.get("digest"):
            return _digest(asset)
        resp = self._call("GET", str(asset["url"]), stream=True, headers={"Accept": "application/octet-stream"})
        h = hashlib.sha256()
        for chunk in resp.iter_content(1 << 20):
            h.update(chunk)
        return h.hexdigest()

    def _assets(self, rel: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {a["name"]: a for a in self._pages(f"/repos/{self.repo}/releases/{rel['id']}/assets")}


def _digest(asset: Mapping[str, Any] | None) -> str | None:
    if not asset or asset.get("state") != "uploaded":
        return None
    digest = str(asset.get("digest") or "")
    return digest.removeprefix("sha256:") if digest.startswith("sha256:") else None


def _message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    codes = ",".join(str(e.get("code")) for e in data.get("errors") or [] if isinstance(e, dict))
    return str(data.get("message", "")) + (f" ({codes})" if codes else "")


def _title(ctx: ReleaseContext) -> str:
    title = (ctx.recipe.get("title") or {}).get("en") or ctx.dataset_id
    return f"{title} v{ctx.version}"


def _body(ctx: ReleaseContext, self_name: str) -> str:
    """Release notes: both languages, then each file with its sha256 and its mirrors."""
    title, desc = ctx.recipe.get("title") or {}, ctx.recipe.get("description") or {}
    lines = [f"**{ctx.dataset_id}** v{ctx.version}", ""]
    for lang in ("en", "fr"):
        if title.get(lang):
            lines += [f"### {title[lang]}", "", str(desc.get(lang, "")).strip(), ""]
    lines += ["| file | size | sha256 | mirrors |", "|---|---|---|---|"]
    for f in ctx.files:
        mirrors = " ".join(f"[{name}]({urls[f.file]})" for name, urls in sorted(ctx.urls.items())
                           if name != self_name and urls.get(f.file, "").startswith("http"))
        lines.append(f"| `{f.file}` | {f.size} | `{f.sha256}` | {mirrors} |")
    return "\n".join(lines)[:BODY_MAX] + "\n"
