"""A real threaded HTTP server on 127.0.0.1 serving source files with injected faults.

Used by the fetch tests: per path it can add latency, answer the first requests with
given statuses (429 with Retry-After, 503, ...), reset the connection midway through
the body, ignore Range (always 200) or honour it (206 with Content-Range), and send a
body without Content-Length. Every request is logged (path, Range header) so tests
can assert what the client really asked for, and the most slow requests in flight at once
is kept, so overlap is proven without timing the client. The tests at the bottom check the
server itself, so the fetch tests stand on verified ground.
"""
from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest
import requests


@dataclass
class Route:
    body: bytes
    latency: float = 0.0
    statuses: list[int] = field(default_factory=list)  # answers of the first requests, in order
    retry_after: str | None = None
    resets: int = 0  # how many full-body responses are cut off with a TCP reset
    reset_at: int = 0  # body bytes sent before the reset
    ranges: bool = True
    content_length: bool = True


class SourceServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str | None]] = []
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests served at once: proves overlap without a clock
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def add(self, path: str, body: bytes, **kw: object) -> str:
        self.routes[path] = Route(body, **kw)  # type: ignore[arg-type]
        return self.base + path

    def requests_for(self, path: str) -> list[str | None]:
        with self._lock:
            return [rng for p, rng in self.log if p == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        rng = h.headers.get("Range")
        with self._lock:
            self.log.append((h.path, rng))
            route = self.routes.get(h.path)
            status = route.statuses.pop(0) if route and route.statuses else None
            reset = False
            if route and status is None and route.resets:
                route.resets -= 1
                reset = True
        if route and route.latency:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            time.sleep(route.latency)
            with self._lock:
                self.in_flight -= 1
        if route is None or status is not None:
            code = status or 404
            h.send_response(code)
            if route and route.retry_after is not None and code in (429, 503):
                h.send_header("Retry-After", route.retry_after)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        body, start = route.body, 0
        if rng and route.ranges and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(body):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(body)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            h.send_response(200)
        part = body[start:]
        if route.content_length:
            h.send_header("Content-Length", str(len(part)))
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if reset:
            h.wfile.write(part[: route.reset_at])
            h.wfile.flush()
            time.sleep(0.1)  # let the client read what was sent: an RST drops unread data
            # SO_LINGER 0: close() sends RST, a real "connection reset by peer".
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        h.wfile.write(part)


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with SourceServer() as srv:
        yield srv


def test_server_answers_range_with_206(server: SourceServer) -> None:
    url = server.add("/f", b"0123456789")
    resp = requests.get(url, headers={"Range": "bytes=4-"}, timeout=5)
    assert resp.status_code == 206
    assert resp.headers["Content-Range"] == "bytes 4-9/10"
    assert resp.content == b"456789"
    assert server.requests_for("/f") == ["bytes=4-"]


def test_server_without_ranges_sends_everything(server: SourceServer) -> None:
    url = server.add("/f", b"0123456789", ranges=False)
    resp = requests.get(url, headers={"Range": "bytes=4-"}, timeout=5)
    assert (resp.status_code, resp.content) == (200, b"0123456789")


def test_server_injects_statuses_then_serves(server: SourceServer) -> None:
    url = server.add("/f", b"x", statuses=[429], retry_after="7")
    first = requests.get(url, timeout=5)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert requests.get(url, timeout=5).content == b"x"


def test_server_resets_the_connection_midway(server: SourceServer) -> None:
    url = server.add("/f", b"a" * 100_000, resets=1, reset_at=1000)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, timeout=5).raise_for_status()
    assert requests.get(url, timeout=5).content == b"a" * 100_000
