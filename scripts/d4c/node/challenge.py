"""The challenge in a check-in: for each file it claims, a node answers with the hash of one
64 KiB piece of it. The piece is chosen from the public seed (the check-in's UTC date),
the node id and a nonce, `prev`: the name of an entry already in the check-in log, at most
a day older than the newest entry before the check-in (d4c.node.checkins checks that). Entry names are the sha256
of their bytes, signatures included, so no one knows a nonce before its entry is written:
answers cannot be computed ahead from the date alone, and hashes of pieces kept in place
of the file do not help (the answer hashes the nonce with the bytes).

What it proves, and what not (docs/nodes.md): the node read that piece at some time
between the `prev` entry and its check-in. A node holding only a share f of a file
answers right with chance about f, more if it tries several recent entries as `prev`
(each is a new draw); one check-in says nothing about the bytes after it was written; and
only a reader holding the file (another node, or a mirror read with `Range`) can check.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from d4c.mirrors.checks import choose_pieces

CHUNK = 1 << 16


def piece(date: str, prev: str, node_id: str, sha256: str, size: int) -> tuple[int, int]:
    """(start, length) of the piece a node answers for."""
    count = max(1, -(-size // CHUNK))
    start = choose_pieces(f"{date}:{prev}:{node_id}", sha256, count, 1)[0] * CHUNK
    return start, min(CHUNK, size - start)


def answer(node_id: str, date: str, prev: str, sha256: str, data: bytes) -> str:
    return hashlib.sha256(f"{node_id}:{date}:{prev}:{sha256}:".encode() + data).hexdigest()


Reader = Callable[[str, int, int], bytes | None]  # (sha256, start, length) -> bytes or None


def answers(node_id: str, date: str, prev: str, sizes: dict[str, int], read: Reader) -> dict[str, str]:
    out = {}
    for sha, size in sorted(sizes.items()):
        start, length = piece(date, prev, node_id, sha, size)
        data = read(sha, start, length)
        if data is not None and len(data) == length:
            out[sha] = answer(node_id, date, prev, sha, data)
    return out


def wrong(node_id: str, date: str, prev: str, claimed: dict[str, str], sizes: dict[str, int],
          read: Reader) -> list[str]:
    """The claimed files this reader can check whose answer is missing or wrong."""
    bad = []
    for sha, size in sorted(sizes.items()):
        start, length = piece(date, prev, node_id, sha, size)
        data = read(sha, start, length)
        if data is None or len(data) != length:
            continue  # the reader cannot check this one
        if claimed.get(sha) != answer(node_id, date, prev, sha, data):
            bad.append(sha)
    return bad
