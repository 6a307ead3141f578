"""Public reachability: what the record, the catalog and the torrents link to must open for anyone.

After upload, every http(s) URL of a target declared `public` (each file, each raw source on
a source mirror; the torrents' web seeds are among those) gets an anonymous HEAD through
`d4c.http.session()`, with no credentials of any kind (no Authorization header, no ~/.netrc):
each object is readable by anyone. The release's own files (artifacts, torrents, manifest,
provenance, bundle) and the first raw source of each target also get one ranged GET
(`Range: bytes=0-0`): the server serves GET there too. Raw sources share one prefix, so a GET
of each would repeat that proof at one request per source (on S3, HEAD and GET are the one
s3:GetObject permission). And the journal, when it is on a target, must NOT be readable
that way. A failure is one line per target, naming a URL and its status, and stops the
release before the record is written.
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


def refusal(sess: requests.Session, url: str, ranged: bool = True) -> str | None:
    """None if an anonymous HEAD (and, if `ranged`, a ranged GET) of `url` succeed, else what
    went wrong."""
    try:
        head = sess.head(url, allow_redirects=True)
        if head.status_code != 200:
            return f"{url} answered {head.status_code} to an anonymous HEAD"
        if not ranged:
            return None
        with sess.get(url, headers={"Range": "bytes=0-0"}, stream=True) as got:
            if got.status_code not in (200, 206):
                return f"{url} answered {got.status_code} to an anonymous ranged GET"
    except requests.RequestException as exc:
        return f"{url}: {http.describe(exc)} on an anonymous read"
    return None


def check_public(files: Mapping[str, Iterable[str]], sources: Mapping[str, Iterable[str]] | None = None,
                 parallel: int = 8) -> list[D4CError]:
    """`files` and `sources` are target name -> its public URLs of release files and of raw
    sources; one error per target that refuses any. Every URL gets a HEAD; the files and the
    first source (sorted) a ranged GET as well. `parallel` URLs are checked at once (the
    session's pool is thread-safe for requests)."""
    out: list[D4CError] = []
    sources = sources or {}
    with anonymous_session() as sess, ThreadPoolExecutor(parallel, thread_name_prefix="reach") as pool:
        for name in dict.fromkeys([*files, *sources]):  # the targets in the caller's order
            own = sorted({u for u in files.get(name, ()) if u.startswith(("http://", "https://"))})
            raw = sorted({u for u in sources.get(name, ()) if u.startswith(("http://", "https://"))} - set(own))
            todo = [(u, True) for u in own] + [(u, i == 0) for i, u in enumerate(raw)]
            bad = [r for r in pool.map(lambda job: refusal(sess, *job), todo) if r is not None]
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
