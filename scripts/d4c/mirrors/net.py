"""The network side of `d4c mirrors check`: per-host limits, one session per thread, counts.

Every request goes through `Net.request`, which waits for its host's turn (at most
`per_host` requests in flight and `rate` requests a second to one host), sends it
through a `d4c.http` session (timeouts, retries with backoff on 429/5xx/connection
failures for GET and HEAD) and counts it, so the report can say how many requests and
bytes a check cost. `file://` URLs are read from the disk (local targets).
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from d4c import http


def host_of(href: str) -> str:
    parts = urlsplit(href)
    return parts.netloc or parts.scheme or "local"


def file_path(href: str) -> Path | None:
    parts = urlsplit(href)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


class _HostGate:
    """At most `per_host` requests in flight, and at most `rate` starts a second."""

    def __init__(self, per_host: int, rate: float) -> None:
        self.slots = threading.BoundedSemaphore(per_host)
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.lock = threading.Lock()
        self.next_start = 0.0

    def __enter__(self) -> None:
        self.slots.acquire()
        if self.interval:
            with self.lock:
                now = time.monotonic()
                start = max(now, self.next_start)
                self.next_start = start + self.interval
            if start > now:
                time.sleep(start - now)

    def __exit__(self, *exc: object) -> None:
        self.slots.release()


@dataclass
class Answer:
    """What a request gave: status (0 when no answer), headers, body (GET only), error text."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    error: str | None = None
    url: str = ""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Net:
    def __init__(self, *, per_host: int = 4, rate: float = 50.0, retries: int = 3,
                 backoff: float = 0.5, timeout: tuple[float, float] = (10.0, 60.0)) -> None:
        self.per_host, self.rate = per_host, rate
        self.retries, self.backoff, self.timeout = retries, backoff, timeout
        self._gates: dict[str, _HostGate] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.requests: Counter[str] = Counter()  # method -> count
        self.bytes_read = 0

    def _session(self) -> requests.Session:
        sess = getattr(self._local, "session", None)
        if sess is None:
            sess = self._local.session = http.session(
                retries=self.retries, backoff_factor=self.backoff, backoff_max=10.0,
                retry_after_max=30, timeout=self.timeout, pool_size=self.per_host * 4)
        return sess

    def _gate(self, host: str) -> _HostGate:
        with self._lock:
            gate = self._gates.get(host)
            if gate is None:
                gate = self._gates[host] = _HostGate(self.per_host, self.rate)
            return gate

    def _count(self, method: str, nbytes: int = 0) -> None:
        with self._lock:
            self.requests[method] += 1
            self.bytes_read += nbytes

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                limit: int | None = None) -> Answer:
        """One HEAD or GET; a GET reads at most `limit` bytes of the body (None: all)."""
        with self._gate(host_of(url)):
            try:
                resp = self._session().request(method, url, headers=headers or {},
                                               allow_redirects=True, stream=method == "GET")
            except requests.RequestException as exc:
                self._count(method)
                return Answer(0, {}, error=http.describe(exc), url=url)
            try:
                body = b""
                if method == "GET":
                    chunks, got = [], 0
                    for chunk in resp.iter_content(1 << 16):
                        chunks.append(chunk)
                        got += len(chunk)
                        if limit is not None and got >= limit:
                            break
                    body = b"".join(chunks)
            except requests.RequestException as exc:
                self._count(method, 0)
                return Answer(resp.status_code, _lower(resp.headers), error=http.describe(exc), url=url)
            finally:
                resp.close()
            self._count(method, len(body))
            return Answer(resp.status_code, _lower(resp.headers), body, url=resp.url)

    def stream_hash(self, url: str, hasher: Any) -> tuple[Answer, int]:
        """GET the whole body into `hasher` without keeping it; (answer, bytes read)."""
        with self._gate(host_of(url)):
            try:
                resp = self._session().get(url, stream=True, allow_redirects=True)
            except requests.RequestException as exc:
                self._count("GET")
                return Answer(0, {}, error=http.describe(exc), url=url), 0
            got = 0
            try:
                if resp.status_code == 200:
                    for chunk in resp.iter_content(1 << 20):
                        hasher.update(chunk)
                        got += len(chunk)
            except requests.RequestException as exc:
                self._count("GET", got)
                return Answer(resp.status_code, _lower(resp.headers), error=http.describe(exc), url=url), got
            finally:
                resp.close()
            self._count("GET", got)
            return Answer(resp.status_code, _lower(resp.headers), url=resp.url), got


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}
