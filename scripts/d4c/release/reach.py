"""Public reachability: what the record, the catalog and the torrents link to must open for anyone.

After upload, every http(s) URL of a release file on a target declared `public` (artifacts,
torrents, manifest, provenance, bundle; the torrents' web seeds are among those) gets an
anonymous HEAD and a ranged GET (`Range: bytes=0-0`) through `d4c.http.session()`, with no
credentials of any kind (no Authorization header, no ~/.netrc). Of the raw sources this
run wrote to a source mirror, one per target (the first, sorted) gets the same two reads,
not each: they sit under the one source prefix (on a service: in the one published
deposit), written now by the same upload call (no per-object ACL, encryption or tags: d4c
sets none), so what makes them readable is the target's policy on that prefix and its URL
mapping, which the one read proves; that each key holds our bytes is proven by the signed
look or verify. A source the target held already is read itself (the caller passes it
among `files`): content-addressed, it may be years old, written under other settings or by
other means, or archived since by a lifecycle rule (GLACIER: HEAD 200, GET 403). A HEAD
per fresh source would repeat the one proof at one request per object, the largest part of
a fresh release's cost on a store. And the journal, when
it is on a target, must NOT be readable that way. A failure is one line per target, naming
a URL and its status, and stops the release before the record is written.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import requests

from d4c import http
from d4c.errors import D4CError


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    return r  # set as the session's auth, so requests never falls back to ~/.netrc


def anonymous_session() -> requests.Session:
    sess = http.session(retries=3, backoff_factor=0.2)
    sess.auth = _no_auth
    return sess


def refusal(sess: requests.Session, url: str) -> str | None:
    """None if an anonymous HEAD and a ranged GET of `url` succeed, else what went wrong."""
    try:
        head = sess.head(url, allow_redirects=True)
        if head.status_code != 200:
            return f"{url} answered {head.status_code} to an anonymous HEAD"
        with sess.get(url, headers={"Range": "bytes=0-0"}, stream=True) as got:
            if got.status_code not in (200, 206):
                return f"{url} answered {got.status_code} to an anonymous ranged GET"
    except requests.RequestException as exc:
        return f"{url}: {http.describe(exc)} on an anonymous read"
    return None


def check_public(files: Mapping[str, Iterable[str]], sources: Mapping[str, Iterable[str]] | None = None,
                 parallel: int = 8) -> list[D4CError]:
    """`files` and `sources` are target name -> its public URLs of release files and of raw
    sources; one error per target that refuses any. Every file and the first source (sorted)
    get a HEAD and a ranged GET (the module docstring says why one source stands for all).
    `parallel` URLs are checked at once (the session's pool is thread-safe for requests)."""
    out: list[D4CError] = []
    sources = sources or {}
    with anonymous_session() as sess, ThreadPoolExecutor(parallel, thread_name_prefix="reach") as pool:
        for name in dict.fromkeys([*files, *sources]):  # the targets in the caller's order
            own = sorted({u for u in files.get(name, ()) if u.startswith(("http://", "https://"))})
            raw = sorted({u for u in sources.get(name, ()) if u.startswith(("http://", "https://"))} - set(own))
            todo = own + raw[:1]
            bad = [r for r in pool.map(lambda url: refusal(sess, url), todo) if r is not None]
            if bad:
                more = f" ({len(bad)} of {len(todo)} URLs refused)" if len(bad) > 1 else ""
                out.append(D4CError(
                    f"target {name!r} is declared public but {bad[0]}{more}",
                    hint="allow anonymous reads (s3:GetObject) on its prefix, or set public: false; "
                         "then rerun `d4c release`"))
    return out


def check_private(name: str, url: str) -> D4CError | None:
    """The journal's URL must not be readable without credentials."""
    if not url.startswith(("http://", "https://")):
        return None
    with anonymous_session() as sess:
        try:
            status = sess.head(url, allow_redirects=True).status_code
        except requests.RequestException:
            return None  # not reachable at all: not public either
    if status >= 400:
        return None
    return D4CError(f"the journal on target {name!r} is readable without credentials at {url} "
                    f"(HTTP {status})",
                    hint="set journal.key to a key outside the bucket's public prefixes")
