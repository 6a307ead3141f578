"""Seeders per infohash from the torrent's trackers: the scrape convention (BEP 48) over
HTTP, and the UDP tracker protocol's scrape (BEP 15)."""
from __future__ import annotations

import os
import socket
import struct
from typing import Any
from urllib.parse import quote_from_bytes, urlsplit

from d4c.mirrors.net import Net


def bdecode(data: bytes) -> Any:
    """A bencoded value (dict keys and strings stay bytes)."""
    def value(i: int) -> tuple[Any, int]:
        c = data[i:i + 1]
        if c == b"i":
            end = data.index(b"e", i)
            return int(data[i + 1:end]), end + 1
        if c == b"l":
            out, i = [], i + 1
            while data[i:i + 1] != b"e":
                v, i = value(i)
                out.append(v)
            return out, i + 1
        if c == b"d":
            d, i = {}, i + 1
            while data[i:i + 1] != b"e":
                k, i = value(i)
                d[k], i = value(i)
            return d, i + 1
        colon = data.index(b":", i)
        n = int(data[i:colon])
        return data[colon + 1:colon + 1 + n], colon + 1 + n

    return value(0)[0]


def scrape_url(announce: str) -> str | None:
    """BEP 48: the announce URL whose last path segment starts with `announce`, that word
    replaced by `scrape`; None when the tracker cannot be scraped that way."""
    head, sep, tail = announce.rpartition("/")
    if not sep or not tail.startswith("announce"):
        return None
    return f"{head}/scrape{tail[len('announce'):]}"


def scrape(net: Net, announce: str, infohash: str, timeout: float = 5.0) -> dict[str, int]:
    """{"complete", "incomplete", "downloaded"} for one infohash (hex); raises OSError/ValueError."""
    raw = bytes.fromhex(infohash)
    if announce.startswith("udp://"):
        return _udp(announce, raw, timeout)
    url = scrape_url(announce)
    if url is None:
        raise ValueError(f"{announce} has no scrape URL (BEP 48)")
    sep = "&" if "?" in url else "?"
    got = net.request("GET", f"{url}{sep}info_hash={quote_from_bytes(raw, safe='')}")
    if got.status != 200:
        raise OSError(got.error or f"HTTP {got.status}")
    doc = bdecode(got.body)
    if b"failure reason" in doc:
        raise ValueError(doc[b"failure reason"].decode(errors="replace"))
    files = doc.get(b"files") or {}
    stats = files.get(raw) or {}
    return {k: int(stats.get(k.encode(), 0)) for k in ("complete", "incomplete", "downloaded")}


def _udp(announce: str, raw: bytes, timeout: float) -> dict[str, int]:
    parts = urlsplit(announce)
    addr = (parts.hostname or "", parts.port or 80)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        tid = int.from_bytes(os.urandom(4), "big")
        sock.sendto(struct.pack(">QII", 0x41727101980, 0, tid), addr)  # connect
        resp = sock.recv(2048)
        action, got_tid, conn = struct.unpack(">IIQ", resp[:16])
        if action != 0 or got_tid != tid:
            raise ValueError("bad UDP tracker connect answer")
        sock.sendto(struct.pack(">QII", conn, 2, tid) + raw, addr)  # scrape
        resp = sock.recv(2048)
        action, got_tid = struct.unpack(">II", resp[:8])
        if action != 2 or got_tid != tid or len(resp) < 20:
            raise ValueError(resp[8:].decode(errors="replace") if action == 3 else "bad UDP scrape answer")
        seeders, completed, leechers = struct.unpack(">III", resp[8:20])
        return {"complete": seeders, "incomplete": leechers, "downloaded": completed}


def torrent_facts(data: bytes) -> tuple[str, list[str]]:
    """(infohash hex, tracker announce URLs) of a .torrent file's bytes."""
    import hashlib

    doc = bdecode(data)
    # the infohash is the SHA-1 of the info dict exactly as it is encoded in the file
    i, infohash = 1, ""
    while data[i:i + 1] != b"e":
        key_end = _end(data, i)
        value_end = _end(data, key_end)
        if data[i:key_end] == b"4:info":
            infohash = hashlib.sha1(data[key_end:value_end]).hexdigest()
        i = value_end
    trackers = [doc[b"announce"].decode()] if b"announce" in doc else []
    for tier in doc.get(b"announce-list") or []:
        trackers += [t.decode() for t in tier if t.decode() not in trackers]
    return infohash, trackers


def _end(data: bytes, i: int) -> int:
    """The index just past the bencoded value at i."""
    c = data[i:i + 1]
    if c == b"i":
        return data.index(b"e", i) + 1
    if c in (b"l", b"d"):
        i += 1
        while data[i:i + 1] != b"e":
            i = _end(data, i)
        return i + 1
    colon = data.index(b":", i)
    return colon + 1 + int(data[i:colon])
