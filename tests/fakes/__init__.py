"""Plumbing shared by the service fakes: a threaded HTTP server on 127.0.0.1, a router,
and fault injection.

Each fake (zenodo, internet_archive, github) is one module that subclasses `FakeServer`
and declares routes. Faults model what a client meets in the wild:

- `fail(method, pattern, status, times)`: answer `status` (429/503/...) *before* applying
  the request, as a rate limiter or an overloaded front end does;
- `reset(method, pattern, times)`: close the connection before applying (a reset);
- `drop_after_mutation(n)`: apply the n-th mutating request (POST/PUT/PATCH/DELETE),
  then close the connection without answering: the client cannot know whether the side
  effect happened, exactly as after a crash or a lost response.
"""
from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Request:
    method: str
    path: str  # percent-decoded path, no query
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    action: str  # "status" or "reset"
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    times: int = 1


Handler = Callable[[Request], Response]


class FakeServer:
    """A ThreadingHTTPServer on 127.0.0.1:0 serving `routes` under one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of answered requests
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._faults: list[_Fault] = []
        self._drop_at: int | None = None
        self._mutations = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up ---------------------------------------------------------------------------
    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method, re.compile(f"^{pattern}$"), handler))

    def fail(self, method: str, pattern: str, status: int, *, times: int = 1,
             headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        with self.lock:
            self._faults.append(_Fault(method, re.compile(pattern), "status", status,
                                       dict(headers or {}), body, times))

    def reset(self, method: str, pattern: str, *, times: int = 1) -> None:
        with self.lock:
            self._faults.append(_Fault(method, re.compile(pattern), "reset", times=times))

    def drop_after_mutation(self, n: int | None) -> None:
        """Apply the n-th mutating request from now on, then hang up without answering."""
        with self.lock:
            self._drop_at = n
            self._mutations = 0

    @property
    def mutations(self) -> int:
        return self._mutations

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> str:
        fake = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else each answer waits ~40 ms on delayed ACKs

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

            def _serve(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- dispatch -------------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        req = Request(
            method=h.command, path=unquote(parts.path), raw_path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in h.headers.items()}, body=body,
        )
        with self.lock:
            fault = self._take_fault(req)
            if fault is not None and fault.action == "reset":
                self._hang_up(h)
                return
            if fault is not None:
                resp = Response(fault.status, fault.body, fault.headers)
            else:
                # HEAD is the GET without its body, as on every real server (d4c's anonymous
                # reachability check sends one before a ranged GET)
                resp = self._handle(replace(req, method="GET") if req.method == "HEAD" else req)
                if req.method in MUTATING and resp.status < 400:
                    self._mutations += 1
                    if self._drop_at is not None and self._mutations == self._drop_at:
                        self.log.append((req.method, req.path, -1))
                        self._hang_up(h)
                        return
            self.log.append((req.method, req.path, resp.status))
        h.send_response(resp.status)
        for k, v in resp.headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(resp.body)))
        h.end_headers()
        if req.method != "HEAD":
            h.wfile.write(resp.body)

    def _take_fault(self, req: Request) -> _Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.method in (req.method, "*") and fault.pattern.search(req.path):
                fault.times -= 1
                return fault
        return None

    def _handle(self, req: Request) -> Response:
        for method, pattern, handler in self._routes:
            m = pattern.match(req.path)
            if m and method == req.method:
                req.params = {k: v for k, v in m.groupdict().items() if v is not None}
                return handler(req)
        return self.not_found(req)

    def not_found(self, req: Request) -> Response:
        return json_response(404, {"message": "Not Found"})

    @staticmethod
    def _hang_up(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# -- helpers the service tests share: a small release and the orchestrator's call order ----
def make_context(tmp: Any, dataset_id: str = "ca_test_demo", version: str = "1.0.0",
                 contents: dict[str, bytes] | None = None, **kw: Any) -> Any:
    """A ReleaseContext over real files written under `tmp` (a pathlib.Path)."""
    import hashlib

    from d4c.release.targets.base import ReleaseContext, ReleaseFile

    contents = contents or {
        f"{dataset_id}_v{version}.parquet": f"data {version} ".encode() * 1000,
        f"{dataset_id}_v{version}_manifest.json": f'{{"version": "{version}"}}\n'.encode(),
    }
    files = []
    for name, data in contents.items():
        path = tmp / version / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        role = "manifest" if name.endswith("_manifest.json") else "data"
        files.append(ReleaseFile(role, role, name, path, len(data), hashlib.sha256(data).hexdigest(),
                                 hashlib.md5(data).hexdigest(), "application/octet-stream"))
    recipe = {
        "id": dataset_id, "version": version, "license": "CC-BY-4.0",
        "title": {"en": "Test dataset", "fr": "Jeu de données d'essai"},
        "description": {"en": "English description.", "fr": "Description en français, été."},
        "creators": [{"name": "Ada Lovelace", "affiliation": "Data for Canada",
                      "orcid": "0000-0002-1825-0097"},
                     {"name": "Data for Canada", "affiliation": "Data for Canada"}],
        "keywords": ["boundaries", "test"],
    }
    return ReleaseContext(dataset_id=dataset_id, version=version, recipe=recipe,
                          manifest=kw.pop("manifest", {"dataset": {"id": dataset_id, "version": version}}),
                          files=files, urls=kw.pop("urls", {}), **kw)


def run_release(target: Any, ctx: Any) -> dict[str, Any]:
    """Drive a target the way `d4c release` does: prepare, look-then-upload, verify, finalize."""
    facts = dict(target.prepare(ctx))
    ctx.state.update(facts)
    for f in ctx.files:
        key = target.key_for(ctx.dataset_id, ctx.version, f.file)
        if not target.exists(key, f.sha256):
            target.upload(key, f.path, f.sha256, f.md5)
        assert target.verify(key, f.sha256), key
    facts.update(target.finalize(ctx))
    return facts
