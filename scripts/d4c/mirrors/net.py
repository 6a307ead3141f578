"""The network side of `d4c mirrors check`: per-host limits, one session per thread, counts.

Every request goes through `Net.request`, which waits for its host's turn (at most
`per_host` requests in flight and `rate` requests a second to one host), sends it
through a `d4c.http` session (timeouts, retries with backoff on 429/5xx/connection
failures for GET and HEAD) and counts it, so the report can say how many requests and
bytes a check cost. `file://` URLs are read from the disk (local targets).

A server is untrusted: the read timeout is per socket read, so one byte every few seconds
would keep a request (and the check) alive for hours. Each request therefore has a
deadline in all (`Net.DEADLINE` seconds, plus the time to read its body at `MIN_RATE`),
retries and redirects included; past it the connection is shut down and the answer is
"no answer within N s". A GET reads at most `limit` bytes whatever the server says.
"""
from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ProtocolError

from d4c import http

MAX_BODY = 64 << 20  # a GET's default cap: a bundle, a manifest, a service's file listing
MIN_RATE = 256 << 10  # bytes a second a body may come at, for its share of the deadline
_now = threading.local()  # .deadline: the _Deadline of this thread's request, if any


class _Deadline:
    """One request's end: past it the watchdog shuts each connection it used down (a blocked
    read returns at once), and `expired` says why the request failed."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.at = seconds, time.monotonic() + seconds
        self.expired = self.closed = False

    def watch(self, conn: HTTPConnection) -> None:
        if self.expired or time.monotonic() >= self.at:
            self.expired = True
            raise ProtocolError(f"no answer within {self.seconds:g} s")
        _WATCHDOG.add(self, conn)

    def cut(self, conn: HTTPConnection) -> None:
        self.expired = True  # before reading conn.sock: a connect() that just set it checks this
        _shut(conn)

    def close(self) -> None:
        self.closed = True


class _Watchdog:
    """One thread for every deadline (a timer thread per request cost 0.3 ms of CPU each)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.heap: list[tuple[float, int, _Deadline, HTTPConnection]] = []
        self.order = itertools.count()
        self.thread: threading.Thread | None = None

    def add(self, deadline: _Deadline, conn: HTTPConnection) -> None:
        with self.cond:
            heapq.heappush(self.heap, (deadline.at, next(self.order), deadline, conn))
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="d4c-deadlines", daemon=True)
                self.thread.start()
            self.cond.notify()

    def _run(self) -> None:
        with self.cond:
            while True:
                while self.heap and self.heap[0][2].closed:
                    heapq.heappop(self.heap)
                wait = self.heap[0][0] - time.monotonic() if self.heap else None
                if wait is None or wait > 0:
                    self.cond.wait(wait)
                    continue
                _, _, deadline, conn = heapq.heappop(self.heap)
                deadline.cut(conn)


_WATCHDOG = _Watchdog()


def _shut(conn: HTTPConnection) -> None:
    # a response with `Connection: close` takes the socket from its connection: the one kept
    sock = conn.sock or getattr(conn, "d4c_sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Mixin:
    """A urllib3 connection that arms the thread's deadline for every request it sends."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.d4c_sock = self.sock  # type: ignore[attr-defined]
        deadline = getattr(_now, "deadline", None)
        if deadline is not None and deadline.expired:
            _shut(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = getattr(_now, "deadline", None)
        if deadline is not None:
            deadline.watch(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _Conn(_Mixin, HTTPConnection):
    pass


class _TLSConn(_Mixin, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConn


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
    DEADLINE = 120.0  # seconds a request may take in all, before its body's share

    def __init__(self, *, per_host: int = 4, rate: float = 50.0, retries: int = 3,
                 backoff: float = 0.5, timeout: tuple[float, float] = (10.0, 60.0),
                 deadline: float = DEADLINE) -> None:
        self.per_host, self.rate, self.deadline = per_host, rate, deadline
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
            for adapter in sess.adapters.values():  # connections that keep the deadline
                assert isinstance(adapter, requests.adapters.HTTPAdapter)
                adapter.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        return sess

    @contextmanager
    def _within(self, body: int) -> Iterator[_Deadline]:
        """This thread's request ends within the deadline plus `body` bytes at MIN_RATE."""
        deadline = _now.deadline = _Deadline(self.deadline + body / MIN_RATE)
        try:
            yield deadline
        finally:
            deadline.close()
            _now.deadline = None

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
                limit: int = MAX_BODY) -> Answer:
        """One HEAD or GET within the deadline; a GET reads at most `limit` bytes of the body."""
        with self._gate(host_of(url)), self._within(limit if method == "GET" else 0) as deadline:
            try:
                resp = self._session().request(method, url, headers=headers or {},
                                               allow_redirects=True, stream=method == "GET")
            except requests.RequestException as exc:
                self._count(method)
                return Answer(0, {}, error=_failed(deadline, exc), url=url)
            chunks: list[bytes] = []
            try:
                got = 0
                for chunk in resp.iter_content(min(1 << 16, limit)) if method == "GET" else ():
                    chunks.append(chunk)
                    got += len(chunk)
                    if got >= limit:
                        break
            except requests.RequestException as exc:
                self._count(method, 0)
                return Answer(resp.status_code, _lower(resp.headers), error=_failed(deadline, exc), url=url)
            finally:
                resp.close()
            body = b"".join(chunks)
            self._count(method, len(body))
            if deadline.expired:  # the cut looks like the end of a body without a length
                return Answer(resp.status_code, _lower(resp.headers), error=_late(deadline), url=url)
            return Answer(resp.status_code, _lower(resp.headers), body, url=resp.url)

    def stream_hash(self, url: str, hasher: Any, limit: int) -> tuple[Answer, int]:
        """GET at most `limit` bytes of the body into `hasher` without keeping them; (answer,
        bytes read). A caller expecting n bytes passes n + 1: an endless body stops there."""
        with self._gate(host_of(url)), self._within(limit) as deadline:
            try:
                resp = self._session().get(url, stream=True, allow_redirects=True)
            except requests.RequestException as exc:
                self._count("GET")
                return Answer(0, {}, error=_failed(deadline, exc), url=url), 0
            got = 0
            try:
                for chunk in resp.iter_content(min(1 << 20, limit)) if resp.status_code == 200 else ():
                    chunk = chunk[:limit - got]
                    hasher.update(chunk)
                    got += len(chunk)
                    if got >= limit:
                        break
            except requests.RequestException as exc:
                self._count("GET", got)
                return Answer(resp.status_code, _lower(resp.headers), error=_failed(deadline, exc), url=url), got
            finally:
                resp.close()
            self._count("GET", got)
            error = _late(deadline) if deadline.expired else None
            return Answer(resp.status_code, _lower(resp.headers), error=error, url=resp.url), got


def _late(deadline: _Deadline) -> str:
    return f"no answer within {deadline.seconds:.0f} s (a server that sends too slowly)"


def _failed(deadline: _Deadline, exc: requests.RequestException) -> str:
    return _late(deadline) if deadline.expired else http.describe(exc)


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}
