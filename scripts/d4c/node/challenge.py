"""The day's challenge in a check-in: for each file it claims, a node answers with the hash
of one 64 KiB piece chosen from a public seed (the check-in's UTC date, as
`d4c.mirrors.checks.choose_pieces` chooses tier 2's pieces), bound to its node id and a
nonce, so an answer cannot be copied from another node or made without the bytes that day.

Anyone holding the file (another node, or a mirror read with `Range`) can check an answer;
a node that gets one wrong is not counted (d4c.node.sync). Limit: the seed is public, so
a node could precompute answers for future dates while it still holds a file (64 KiB per
file per day); an unpredictable daily seed would close that.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable

from d4c.mirrors.checks import choose_pieces

CHUNK = 1 << 16


def piece(date: str, sha256: str, size: int) -> tuple[int, int]:
    """(start, length) of the day's piece of a file."""
    count = max(1, -(-size // CHUNK))
    start = choose_pieces(date, sha256, count, 1)[0] * CHUNK
    return start, min(CHUNK, size - start)


def answer(node_id: str, date: str, nonce: str, sha256: str, data: bytes) -> str:
    return hashlib.sha256(f"{node_id}:{date}:{nonce}:{sha256}:".encode() + data).hexdigest()


Reader = Callable[[str, int, int], bytes | None]  # (sha256, start, length) -> bytes or None


def answers(node_id: str, date: str, nonce: str, sizes: dict[str, int], read: Reader) -> dict[str, str]:
    out = {}
    for sha, size in sorted(sizes.items()):
        start, length = piece(date, sha, size)
        data = read(sha, start, length)
        if data is not None and len(data) == length:
            out[sha] = answer(node_id, date, nonce, sha, data)
    return out


def wrong(node_id: str, date: str, nonce: str, claimed: dict[str, str], sizes: dict[str, int],
          read: Reader) -> list[str]:
    """The claimed files this reader can check whose answer is missing or wrong."""
    bad = []
    for sha, size in sorted(sizes.items()):
        start, length = piece(date, sha, size)
        data = read(sha, start, length)
        if data is None or len(data) != length:
            continue  # the reader cannot check this one
        if claimed.get(sha) != answer(node_id, date, nonce, sha, data):
            bad.append(sha)
    return bad
