"""Seeding: the node hands each data file it holds, with the file's torrent from the
catalog (its web seeds are the mirrors), to a transmission-daemon over its RPC, so peers
fetch from it and it fills from peers or mirrors alike (docs/nodes.md).

The daemon may be the volunteer's own, with other torrents: the node adds and removes only
torrents whose download folder is inside its data folder. A torrent is handed over only
when its sha256 is the catalog's, it is one file, and its name is the held file's name,
so the daemon finds the verified copy in place and seeds it without writing to it.
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import requests
import torf

from d4c import http
from d4c.errors import D4CError
from d4c.node.inventory import Entry
from d4c.node.store import State, Store, sha256_of
from d4c.node.transfer import Allowance, download

FIELDS = ["id", "hashString", "downloadDir", "name"]


class Transmission:
    """transmission-daemon's JSON RPC (its session-id handshake: 409, then retry)."""

    def __init__(self, url: str, session: requests.Session | None = None) -> None:
        self.url = url
        self.sess = session or http.session(retries=1, backoff_factor=0.2)
        self.sid = ""

    def call(self, method: str, **arguments: Any) -> dict[str, Any]:
        for _ in range(3):
            try:
                resp = self.sess.post(self.url, json={"method": method, "arguments": arguments},
                                      headers={"X-Transmission-Session-Id": self.sid})
            except requests.RequestException as exc:
                raise D4CError(f"transmission RPC {method}: {http.describe(exc)}",
                               hint="check the node config's `seeder` (is transmission-daemon running?)") from None
            if resp.status_code == 409:
                self.sid = resp.headers.get("X-Transmission-Session-Id", "")
                continue
            try:
                doc = resp.json() if resp.status_code == 200 else {}
            except ValueError:
                doc = {}
            if not isinstance(doc, dict) or doc.get("result") != "success":
                raise D4CError(f"transmission RPC {method}: HTTP {resp.status_code} "
                               f"{str(doc.get('result', ''))[:200] if isinstance(doc, dict) else ''}")
            return dict(doc.get("arguments") or {})
        raise D4CError(f"transmission RPC {method}: no session id after 3 tries")


def torrent_file(store: Store, state: State, t: Entry, allow: Allowance | None = None) -> Path | None:
    """The verified .torrent: the copy this node holds, else its cache, else fetched over HTTP
    into the cache (`allow` None: an allowance of its own size, a torrent is small)."""
    held = state.held.get(t.sha256)
    if held is not None:
        return store.path_of(held.relpath)
    cache = store.meta / "torrents" / f"{t.sha256}.torrent"
    if cache.is_file() and sha256_of(cache) == t.sha256:
        return cache
    part = store.partial(t.sha256)
    if download(t.hrefs, part, t.size, t.sha256, allow or Allowance(t.size)).status != "ok":
        part.unlink(missing_ok=True)
        return None
    cache.parent.mkdir(parents=True, exist_ok=True)
    part.replace(cache)
    return cache


def _wanted(store: Store, state: State, entries: dict[str, Entry], warn: list[str]) -> dict[str, tuple[Path, bytes]]:
    """infohash -> (the held file, the torrent's bytes) for each held file with a torrent."""
    out = {}
    for sha, h in sorted(state.held.items()):
        e = entries.get(sha)
        t = entries.get(e.torrent or "") if e else None
        path = torrent_file(store, state, t) if t else None
        if e is None or path is None:
            continue
        try:
            meta = torf.Torrent.read(path)
            ok = meta.mode == "singlefile" and meta.name == e.file and meta.size == e.size
            infohash = str(meta.infohash)
        except (torf.TorfError, OSError):
            ok = False
        if not ok:
            warn.append(f"{h.relpath}: its torrent is not this one file under its name, not seeded")
            continue
        out[infohash] = (store.path_of(h.relpath), path.read_bytes())
    return out


def reconcile(url: str, store: Store, state: State, entries: dict[str, Entry], warn: list[str],
              rpc: Transmission | None = None) -> int:
    """Make the daemon seed exactly the held files; the number seeded. A daemon that does not
    answer is one warning: the copies are kept, seeding waits for the next run."""
    rpc = rpc or Transmission(url)
    want = _wanted(store, state, entries, warn)
    root = store.root.resolve()
    try:
        have = rpc.call("torrent-get", fields=FIELDS).get("torrents", [])
        ours = {str(t["hashString"]): int(t["id"]) for t in have
                if Path(str(t["downloadDir"])).resolve().is_relative_to(root)}
        gone = [i for h, i in ours.items() if h not in want]
        if gone:
            rpc.call("torrent-remove", ids=gone, **{"delete-local-data": False})
        for infohash, (path, raw) in sorted(want.items()):
            if infohash not in ours:
                rpc.call("torrent-add", metainfo=base64.b64encode(raw).decode(),
                         **{"download-dir": str(path.parent.resolve()), "paused": False})
    except D4CError as exc:
        warn.append(f"seeding: {exc.line()}")
    return len(want)
