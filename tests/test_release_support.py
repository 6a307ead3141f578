"""Shared pieces for the release tests (no tests here): a real S3 server (moto's
ThreadedMotoServer over HTTP on 127.0.0.1), a fault-injecting HTTP proxy in front of it,
and helpers to write a targets config and build the demo dataset once.

Import the fixtures into a test module with `from test_release_support import ...`.
"""
from __future__ import annotations

import http.client
import itertools
import json
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

DEMO = "ca_d4c_provinces-territories"
_BUCKETS = itertools.count()
S3_ENV = {"D4C_TEST_S3_KEY": "testing-key-id", "D4C_TEST_S3_SECRET": "testing-secret-key"}


class MotoS3:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="a", aws_secret_access_key="b",
                            config=Config(s3={"addressing_style": "path"}))

    def bucket(self, prefix: str = "bkt", public: bool | tuple[str, ...] = False) -> str:
        """A new bucket; `public`: anonymous reads of every key (True) or of keys under these
        prefixes only, as on an open-data bucket (web seeds, plain downloads). Without it, moto
        answers 403 to unsigned requests, as a private bucket does."""
        # moto's backends are per process, shared by every server instance: unique names
        name = f"{prefix}-{next(_BUCKETS)}-{os.getpid()}"
        self.client().create_bucket(Bucket=name)
        if public:
            prefixes = ("",) if public is True else public
            # AWS authorizes HEAD as s3:GetObject; moto 5 checks an "s3:HeadObject" action, so
            # this moto-only policy names both.
            self.client().put_bucket_policy(Bucket=name, Policy=json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:HeadObject"],
                    "Resource": [f"arn:aws:s3:::{name}/{p}*" for p in prefixes]}]}))
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    s3 = MotoS3()
    yield s3
    s3.server.stop()


class FaultProxy:
    """A real HTTP proxy on 127.0.0.1 that answers 429/503 (or S3's 409
    ConditionalRequestConflict: another writer's conditional write in flight) or resets the
    connection on chosen requests, before forwarding (request lost) or after (response lost)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.split("://", 1)[1]
        self.plan: Callable[[int, str, str], str | None] = lambda n, m, p: None
        self.count = 0
        self.faults: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.count += 1
                    proxy.requests.append((self.command, self.path))
                    fault = proxy.plan(proxy.count, self.command, self.path)
                    if fault:
                        proxy.faults.append(f"{fault} {self.command} {self.path}")
                if fault in ("429", "503", "409"):
                    msg = (b"<Error><Code>ConditionalRequestConflict</Code></Error>" if fault == "409"
                           else b"<Error><Code>SlowDown</Code></Error>")
                    self.send_response(int(fault))
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                if fault == "reset-before":
                    return self._reset()
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if fault == "reset-after":
                    return self._reset()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # HEAD keeps the upstream length (of the object it describes)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _reset(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                self.close_connection = True
                self.connection.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def s3_target_yaml(name: str, endpoint: str, bucket: str, *, retain: str = "all",
                   source_mirror: bool = False, layout: str | None = None,
                   public: str | None = None, chunk: int | None = None,
                   declared_public: bool | None = None) -> str:
    lines = [f"  - name: {name}", "    kind: s3", f"    url: {public or endpoint + '/' + bucket}/{{key}}",
             f"    retain: {retain}", f"    source_mirror: {'true' if source_mirror else 'false'}",
             "    credentials: {access_key_id: D4C_TEST_S3_KEY, secret_access_key: D4C_TEST_S3_SECRET}",
             "    options:", f"      bucket: {bucket}", f"      endpoint_url: {endpoint}",
             "      max_attempts: 10"]
    if layout:
        lines.insert(2, f"    layout: \"{layout}\"")
    if chunk:
        lines.append(f"      multipart_chunksize: {chunk}")
    if declared_public is not None:
        lines.insert(2, f"    public: {'true' if declared_public else 'false'}")
    return "\n".join(lines) + "\n"


def local_target_yaml(name: str, path: Path, *, url: str | None = None, retain: str = "all",
                      source_mirror: bool = True) -> str:
    out = (f"  - name: {name}\n    kind: local\n    retain: {retain}\n"
           f"    source_mirror: {'true' if source_mirror else 'false'}\n"
           f"    options: {{path: \"{path}\"}}\n")
    return out + (f"    url: \"{url}\"\n" if url else "")


def write_config(path: Path, *targets: str, trackers: tuple[str, ...] = (), top: str = "") -> Path:
    """A targets config; `top` is more top-level YAML (e.g. `journal: {target: dfc}`)."""
    text = top + "targets:\n" + "".join(targets)
    if trackers:
        text = "torrent:\n  trackers: [" + ", ".join(trackers) + "]\n" + text
    path.write_text(text)
    return path


def build_in(root: Path, ident: str) -> Path:
    """Build `ident` where `d4c release` looks for it, with the real build (release never builds)."""
    from d4c.build.pipeline import BuildOptions, build
    from d4c.recipe import load_id
    from d4c.release.files import build_dir_for

    rcp = load_id(ident, root)
    out = build_dir_for(root, rcp)
    if not (out / "manifest.json").is_file():
        build(rcp, root, out, BuildOptions())
    return out


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset built once per session (a git copy of the project, built in place)."""
    import subprocess

    from conftest import REPO

    dst = tmp_path_factory.mktemp("demo") / "repo"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], cwd=dst, check=True, env=env)
    old = os.environ.get("D4C_REPO")
    old_cache = os.environ.get("D4C_CACHE")
    os.environ["D4C_REPO"] = str(dst)
    os.environ["D4C_CACHE"] = str(tmp_path_factory.mktemp("demo-cache"))
    try:
        build_in(dst, DEMO)
    finally:
        for name, value in (("D4C_REPO", old), ("D4C_CACHE", old_cache)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return dst


def fresh_repo(demo_build: Path, dest: Path) -> Path:
    """A copy of the built demo repo (git history and build folder included)."""
    shutil.copytree(demo_build, dest, symlinks=True)
    return dest
