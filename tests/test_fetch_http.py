"""d4c.http.session: retries for idempotent methods only, bounded Retry-After, timeouts, UA."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import urllib3.util.retry
from d4c import http
from test_fetch_server import SourceServer


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with SourceServer() as srv:
        yield srv


def test_retry_after_is_capped(server: SourceServer, monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.add("/x", b"ok", statuses=[503], retry_after="3600")
    slept: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)  # the waits urllib3 asks for
    resp = http.session(backoff_factor=0.01, retry_after_max=1).get(url)
    assert (resp.status_code, resp.content) == (200, b"ok")
    assert slept and max(slept) == 1  # the server's 3600 s, capped to 1 s


def test_gives_up_and_returns_the_last_status(server: SourceServer) -> None:
    url = server.add("/x", b"ok", statuses=[500] * 10)
    resp = http.session(retries=2, backoff_factor=0.01).get(url)
    assert resp.status_code == 500
    assert len(server.requests_for("/x")) == 3


def test_post_is_never_retried(server: SourceServer) -> None:
    hits: list[int] = []
    srv = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:  # closed at the end of the test
                return
            hits.append(1)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    port = srv.getsockname()[1]
    resp = http.session(backoff_factor=0.01).post(f"http://127.0.0.1:{port}/create", data=b"{}")
    time.sleep(0.1)  # a retry, if any, would have arrived by now
    srv.close()
    assert resp.status_code == 503 and hits == [1]


def test_default_timeout_applies() -> None:
    # A server that accepts and never answers: the read timeout must end the wait.
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    sess = http.session(retries=0, timeout=(1.0, 0.3))
    with pytest.raises(requests.exceptions.ConnectionError) as err:  # a hang is pytest's timeout
        sess.get(f"http://127.0.0.1:{port}/")
    assert http.describe(err.value) == "server stopped sending (read timed out)"
    srv.close()


def test_user_agent_names_d4c(server: SourceServer) -> None:
    seen: list[str] = []
    url = server.add("/ua", b"")
    orig = server._serve

    def spy(h: object) -> None:
        seen.append(h.headers["User-Agent"])  # type: ignore[attr-defined]
        orig(h)  # type: ignore[arg-type]

    server._serve = spy  # type: ignore[method-assign]
    http.session().get(url)
    assert seen and seen[0].startswith("d4c/")


def test_connection_refused_is_described() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.close()
    with pytest.raises(requests.exceptions.ConnectionError) as err:
        http.session(retries=1, backoff_factor=0.01).get(f"http://127.0.0.1:{port}/")
    assert http.describe(err.value) == "connection refused"
