"""The one `requests` session factory of the project.

Every HTTP call in d4c goes through `session()`: a default timeout on every request
(requests has none), urllib3 retries with exponential backoff on 429, 5xx and
connection failures for idempotent methods only (a POST that created something must
be re-checked by its caller, never blindly re-sent), `Retry-After` honoured but
capped so a server cannot park a build for an hour, and a user agent naming d4c.
`describe(exc)` turns a transport failure into a short phrase for one-line errors.
"""
from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

from d4c import __version__

USER_AGENT = f"d4c/{__version__} (+https://dataforcanada.org)"
# (connect, read) seconds; read is per socket read, not for the whole body.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class _TimeoutAdapter(HTTPAdapter):
    """An adapter that applies a default timeout to every request sent through it."""

    def __init__(self, timeout: tuple[float, float], **kwargs: Any) -> None:
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def session(
    *,
    retries: int = 5,
    backoff_factor: float = 0.5,
    backoff_max: float = 30.0,
    retry_after_max: int = 60,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    pool_size: int = 16,
) -> requests.Session:
    """A `requests.Session` with timeouts, bounded retries and the d4c user agent.

    Retries apply to idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) on
    connection errors, read errors before a response, and the statuses 429/500/502/
    503/504. After the last retry the final response is returned (not raised), so the
    caller reports the real status. Tests pass a small `backoff_factor`.
    """
    # urllib3 >= 2.6 caps an honoured Retry-After itself (retry_after_max).
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        other=0,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS,
        respect_retry_after_header=True,
        raise_on_status=False,
        raise_on_redirect=False,
        retry_after_max=retry_after_max,
    )
    sess = requests.Session()
    adapter = _TimeoutAdapter(timeout, max_retries=retry, pool_connections=pool_size, pool_maxsize=pool_size)
    sess.mount("https://", adapter)
    sess.mount("http://", adapter)
    sess.headers["User-Agent"] = USER_AGENT
    return sess


def send_while_refused(
    send: Callable[[], requests.Response],
    refused: Callable[[requests.Response], bool],
    *,
    wait_max: float,
    attempts: int = 6,
    rewind: Callable[[], None] | None = None,
) -> requests.Response:
    """Send again while the server answers that it refused the request (rate limits).

    A refused request was never applied, so even a create or a publish may be re-sent;
    any other answer is returned for the caller to judge (the session's own retries
    cover idempotent methods). Waits honour Retry-After, capped at `wait_max`.
    """
    for attempt in range(attempts):
        resp = send()
        if not refused(resp) or attempt == attempts - 1:
            return resp
        if rewind:
            rewind()
        time.sleep(min(float(resp.headers.get("Retry-After") or 2**attempt), wait_max))
    raise AssertionError("unreachable: attempts >= 1")


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts (requests wraps urllib3 wraps socket errors)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        nxt = getattr(cur, "reason", None)
        cur = nxt if isinstance(nxt, BaseException) else (cur.__cause__ or cur.__context__)
        if cur is None and seen[-1].args and isinstance(seen[-1].args[0], BaseException):
            cur = seen[-1].args[0]
    return seen


def describe(exc: BaseException) -> str:
    """A short, user-facing phrase for a transport failure (no traceback, no secrets)."""
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    if any(isinstance(e, socket.gaierror) for e in chain) or "NameResolutionError" in text or (
        "Name or service not known" in text or "Temporary failure in name resolution" in text
    ):
        return "DNS lookup failed (check the host name and your network)"
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(e, ssl.SSLError) for e in chain):
        return "TLS handshake failed (bad certificate or not an HTTPS server)"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return "connection refused"
    # urllib3's NewConnectionError subclasses ConnectTimeoutError, hence refused first.
    if any(isinstance(e, (requests.exceptions.ConnectTimeout, ConnectTimeoutError)) for e in chain):
        return "connection timed out"
    if any(isinstance(e, (requests.exceptions.ReadTimeout, ReadTimeoutError)) for e in chain):
        return "server stopped sending (read timed out)"
    if any(isinstance(e, ConnectionResetError) for e in chain) or "reset by peer" in text:
        return "connection reset by the server"
    if isinstance(exc, requests.exceptions.RetryError) or "Max retries exceeded" in text:
        return "gave up after repeated failures"
    if any(isinstance(e, (requests.exceptions.ChunkedEncodingError, ProtocolError)) for e in chain):
        return "connection broken during the transfer"
    return f"{type(exc).__name__}"
