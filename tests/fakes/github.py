"""A fake GitHub releases API faithful to the documented behaviour we rely on.

- `GET /repos/{o}/{r}/releases/tags/{tag}` finds *published* releases only (404 otherwise:
  drafts have no tag yet), so a draft is found by listing `GET /repos/{o}/{r}/releases`
  (newest first, `per_page`/`page`, `Link` header);
- `POST /repos/{o}/{r}/releases` with `draft: true` may be repeated: GitHub happily makes
  several drafts for one tag; a second *published* release of a tag answers 422
  `already_exists`;
- assets go to the `upload_url` (here under `/uploads`) with `?name=`; a duplicate name
  answers 422 `already_exists`; each asset reports `digest: "sha256:<hex>"`;
- `PATCH .../releases/{id}` with `draft: false` publishes; with `immutable=True` a
  published release refuses new, changed or deleted assets and tag changes;
- `stale_listings(n)`: the next n asset listings come back empty, as from a lagging read
  replica, so a client that trusts them meets 422 `already_exists`;
- `break_next_upload()` leaves the next upload as a `starter` asset (a failed upload),
  which blocks its name until deleted, as on GitHub.
Published assets download from `/{o}/{r}/releases/download/{tag}/{name}`.
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Any

from . import FakeServer, Request, Response, json_response

REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


def _invalid(resource: str, field: str, code: str = "already_exists") -> Response:
    return json_response(422, {"message": "Validation Failed",
                               "errors": [{"resource": resource, "code": code, "field": field}],
                               "documentation_url": "https://docs.github.com/rest/releases"})


class FakeGitHub(FakeServer):
    def __init__(self, token: str, *, immutable: bool = True) -> None:
        super().__init__()
        self.token, self.immutable = token, immutable
        self.releases: dict[int, dict[str, Any]] = {}
        self.blobs: dict[int, bytes] = {}  # asset id -> bytes
        self._ids = itertools.count(1000)
        self._break_upload = False
        self._stale = 0
        self.push = True  # the token's permission on the repository (GET /repos/{owner}/{repo})
        for method, pattern, handler in [
            ("GET", REPO, self._repo),
            ("GET", f"{REPO}/releases", self._list),
            ("POST", f"{REPO}/releases", self._create),
            ("GET", f"{REPO}/releases/tags/(?P<tag>.+)", self._by_tag),
            ("GET", rf"{REPO}/releases/(?P<id>\d+)", self._get),
            ("PATCH", rf"{REPO}/releases/(?P<id>\d+)", self._patch),
            ("DELETE", rf"{REPO}/releases/(?P<id>\d+)", self._delete_release),
            ("GET", rf"{REPO}/releases/(?P<id>\d+)/assets", self._assets),
            ("POST", rf"/uploads{REPO}/releases/(?P<id>\d+)/assets", self._upload),
            ("GET", rf"{REPO}/releases/assets/(?P<aid>\d+)", self._get_asset),
            ("DELETE", rf"{REPO}/releases/assets/(?P<aid>\d+)", self._delete_asset),
            ("GET", r"/(?P<owner>[^/]+)/(?P<repo>[^/]+)/releases/download/(?P<tag>.+)/(?P<name>[^/]+)",
             self._download),
        ]:
            self.route(method, pattern, handler)

    def break_next_upload(self) -> None:
        self._break_upload = True

    def stale_listings(self, n: int) -> None:
        self._stale = n

    # -- auth -----------------------------------------------------------------------------
    def _handle(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        public = req.method == "GET" and "/releases/download/" in req.path
        if not public and auth not in (f"Bearer {self.token}", f"token {self.token}"):
            return json_response(401, {"message": "Bad credentials"})
        resp = super()._handle(req)
        resp.headers.update({"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4999",
                             "X-RateLimit-Used": "1", "X-RateLimit-Resource": "core"})
        return resp

    # -- JSON shapes ----------------------------------------------------------------------
    def _asset_json(self, req: Request, rel: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
        o, r = req.params["owner"], req.params["repo"]
        tag = rel["tag_name"] if not rel["draft"] else f"untagged-{rel['id']:x}"
        return {**a, "url": f"{self.url}/repos/{o}/{r}/releases/assets/{a['id']}",
                "browser_download_url": f"{self.url}/{o}/{r}/releases/download/{tag}/{a['name']}"}

    def _json(self, req: Request, rel: dict[str, Any]) -> dict[str, Any]:
        o, r = req.params["owner"], req.params["repo"]
        tag = rel["tag_name"] if not rel["draft"] else f"untagged-{rel['id']:x}"
        return {**{k: v for k, v in rel.items() if k != "assets"},
                "url": f"{self.url}/repos/{o}/{r}/releases/{rel['id']}",
                "html_url": f"{self.url}/{o}/{r}/releases/tag/{tag}",
                "upload_url": f"{self.url}/uploads/repos/{o}/{r}/releases/{rel['id']}/assets{{?name,label}}",
                "assets": [self._asset_json(req, rel, a) for a in rel["assets"].values()]}

    def _release(self, req: Request) -> dict[str, Any] | Response:
        rel = self.releases.get(int(req.params["id"]))
        return rel if rel is not None else json_response(404, {"message": "Not Found"})

    def _published_tag(self, tag: str) -> dict[str, Any] | None:
        return next((r for r in self.releases.values() if not r["draft"] and r["tag_name"] == tag), None)

    # -- the repository -----------------------------------------------------------------------
    def _repo(self, req: Request) -> Response:
        o, r = req.params["owner"], req.params["repo"]
        return json_response(200, {"full_name": f"{o}/{r}", "private": False,
                                   "permissions": {"admin": False, "push": self.push, "pull": True}})

    # -- releases -------------------------------------------------------------------------
    def _list(self, req: Request) -> Response:
        per_page, page = min(int(req.query.get("per_page", 30)), 100), int(req.query.get("page", 1))
        rels = sorted(self.releases.values(), key=lambda r: -r["id"])
        chunk = rels[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(rels):
            headers["Link"] = f'<{self.url}{req.raw_path}?per_page={per_page}&page={page + 1}>; rel="next"'
        return json_response(200, [self._json(req, r) for r in chunk], headers)

    def _create(self, req: Request) -> Response:
        body = req.json() or {}
        tag = body.get("tag_name")
        if not tag:
            return _invalid("Release", "tag_name", "missing_field")
        draft = bool(body.get("draft", False))
        if not draft and self._published_tag(tag):
            return _invalid("Release", "tag_name")
        rid = next(self._ids)
        self.releases[rid] = {
            "id": rid, "tag_name": tag, "name": body.get("name") or tag, "body": body.get("body") or "",
            "target_commitish": body.get("target_commitish") or "main", "draft": draft,
            "prerelease": bool(body.get("prerelease", False)), "immutable": not draft and self.immutable,
            "assets": {},
        }
        return json_response(201, self._json(req, self.releases[rid]))

    def _by_tag(self, req: Request) -> Response:
        rel = self._published_tag(req.params["tag"])
        return json_response(200, self._json(req, rel)) if rel else json_response(404, {"message": "Not Found"})

    def _get(self, req: Request) -> Response:
        rel = self._release(req)
        return rel if isinstance(rel, Response) else json_response(200, self._json(req, rel))

    def _patch(self, req: Request) -> Response:
        rel = self._release(req)
        if isinstance(rel, Response):
            return rel
        body = req.json() or {}
        tag = body.get("tag_name", rel["tag_name"])
        if rel["immutable"] and tag != rel["tag_name"]:
            return json_response(422, {"message": "Cannot change the tag of an immutable release"})
        publishing = rel["draft"] and body.get("draft") is False
        if publishing and self._published_tag(tag):
            return _invalid("Release", "tag_name")
        rel.update({k: body[k] for k in ("name", "body", "prerelease", "target_commitish") if k in body})
        rel["tag_name"] = tag
        if publishing:
            rel["draft"], rel["immutable"] = False, self.immutable
        return json_response(200, self._json(req, rel))

    def _delete_release(self, req: Request) -> Response:
        rel = self._release(req)
        if isinstance(rel, Response):
            return rel
        del self.releases[rel["id"]]
        return Response(204)

    # -- assets ---------------------------------------------------------------------------
    def _assets(self, req: Request) -> Response:
        rel = self._release(req)
        if isinstance(rel, Response):
            return rel
        per_page, page = min(int(req.query.get("per_page", 30)), 100), int(req.query.get("page", 1))
        items = list(rel["assets"].values())
        if self._stale > 0:
            self._stale, items = self._stale - 1, []
        headers = {}
        if page * per_page < len(items):
            headers["Link"] = f'<{self.url}{req.raw_path}?per_page={per_page}&page={page + 1}>; rel="next"'
        return json_response(200, [self._asset_json(req, rel, a)
                                   for a in items[(page - 1) * per_page: page * per_page]], headers)

    def _upload(self, req: Request) -> Response:
        rel = self._release(req)
        if isinstance(rel, Response):
            return rel
        name = req.query.get("name")
        if not name:
            return _invalid("ReleaseAsset", "name", "missing_field")
        if rel["immutable"]:
            return json_response(422, {"message": "Cannot upload assets to an immutable release."})
        if name in rel["assets"]:
            return _invalid("ReleaseAsset", "name")
        aid = next(self._ids)
        state = "starter" if self._break_upload else "uploaded"
        rel["assets"][name] = {
            "id": aid, "name": name, "label": req.query.get("label") or "", "state": state,
            "content_type": req.headers.get("content-type", "application/octet-stream"),
            "size": len(req.body) if state == "uploaded" else 0, "download_count": 0,
            "digest": "sha256:" + hashlib.sha256(req.body).hexdigest() if state == "uploaded" else None,
        }
        self.blobs[aid] = req.body
        if self._break_upload:
            self._break_upload = False
            return json_response(502, {"message": "Server Error"})
        return json_response(201, self._asset_json(req, rel, rel["assets"][name]))

    def _find_asset(self, aid: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for rel in self.releases.values():
            for a in rel["assets"].values():
                if a["id"] == aid:
                    return rel, a
        return None

    def _get_asset(self, req: Request) -> Response:
        found = self._find_asset(int(req.params["aid"]))
        if found is None:
            return json_response(404, {"message": "Not Found"})
        if req.headers.get("accept") == "application/octet-stream":
            return Response(200, self.blobs[found[1]["id"]], {"Content-Type": "application/octet-stream"})
        return json_response(200, self._asset_json(req, *found))

    def _delete_asset(self, req: Request) -> Response:
        found = self._find_asset(int(req.params["aid"]))
        if found is None:
            return json_response(404, {"message": "Not Found"})
        rel, a = found
        if rel["immutable"]:
            return json_response(422, {"message": "Cannot delete assets of an immutable release."})
        del rel["assets"][a["name"]]
        return Response(204)

    def _download(self, req: Request) -> Response:
        rel = self._published_tag(req.params["tag"])
        a = rel["assets"].get(req.params["name"]) if rel else None
        if a is None or a["state"] != "uploaded":
            return Response(404, b"Not Found")
        return Response(200, self.blobs[a["id"]], {"Content-Type": "application/octet-stream"})
