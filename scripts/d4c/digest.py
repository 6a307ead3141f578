"""Size, sha256, md5 and BitTorrent v1 piece hashes from ONE read of a file.

The caller's thread reads blocks and hands each block to two worker threads through
bounded queues: one computes md5 (the slowest hash, ~700 MB/s here), the other sha256
and the per-piece SHA-1s (together about as costly as md5). hashlib releases the GIL
on large buffers, so the two workers run on both cores and the whole digest costs
little more than md5 alone. Memory is bounded by block size x queue depth, whatever
the file size. The release step takes `pieces` from here instead of re-reading.
"""
from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PIECE_SIZE = 16 * 2**20
BLOCK_SIZE = 4 * 2**20
QUEUE_DEPTH = 6  # both workers share each block: peak ~ (depth + 3) x block = 36 MiB
_DONE = b""


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str
    md5: str
    piece_size: int
    pieces: bytes  # concatenated 20-byte SHA-1 digests, as in a torrent's info.pieces

    @property
    def pieces_sha1(self) -> str:
        """Hex of `pieces`, the manifest's `pieces_sha1` field."""
        return self.pieces.hex()


class _Worker(threading.Thread):
    """Consume blocks from a bounded queue until the empty sentinel; keep the first error."""

    def __init__(self, consume: Callable[[bytes], None]) -> None:
        super().__init__(daemon=True)
        self.queue: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_DEPTH)
        self.error: BaseException | None = None
        self._consume = consume

    def run(self) -> None:
        while True:
            block = self.queue.get()
            if block is _DONE or not block:
                return
            if self.error is None:
                try:
                    self._consume(block)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                    self.error = exc


class _Pieces:
    """sha256 of the whole stream plus SHA-1 per `piece_size` bytes, across block borders."""

    def __init__(self, piece_size: int) -> None:
        self.sha256 = hashlib.sha256()
        self.piece_size = piece_size
        self.piece = hashlib.sha1()
        self.filled = 0
        self.out: list[bytes] = []

    def update(self, block: bytes) -> None:
        self.sha256.update(block)
        view = memoryview(block)
        while view:
            take = min(self.piece_size - self.filled, len(view))
            self.piece.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == self.piece_size:
                self.out.append(self.piece.digest())
                self.piece, self.filled = hashlib.sha1(), 0

    def finish(self) -> bytes:
        if self.filled:
            self.out.append(self.piece.digest())
        return b"".join(self.out)


def digest_file(
    path: Path | str, piece_size: int = DEFAULT_PIECE_SIZE, *, block_size: int = BLOCK_SIZE
) -> FileDigest:
    """Digest `path` in one read: size, sha256, md5 and torrent v1 pieces at `piece_size`.

    `pieces` equals what torf computes for a single-file torrent of the same piece size.
    """
    if piece_size <= 0 or block_size <= 0:
        raise ValueError("piece_size and block_size must be positive")
    md5 = hashlib.md5()
    pieces = _Pieces(piece_size)
    workers = [_Worker(md5.update), _Worker(pieces.update)]
    for w in workers:
        w.start()
    size = 0
    try:
        # No-follow: an artifact is hashed only as the regular file it is, never through a link.
        with open(path, "rb", buffering=0, opener=_nofollow) as fh:
            while True:
                block = fh.read(block_size)
                if not block or any(w.error for w in workers):
                    break
                size += len(block)
                for w in workers:
                    w.queue.put(block)
    finally:
        for w in workers:
            w.queue.put(_DONE)
        for w in workers:
            w.join()
    for w in workers:
        if w.error is not None:
            raise w.error
    return FileDigest(
        size=size,
        sha256=pieces.sha256.hexdigest(),
        md5=md5.hexdigest(),
        piece_size=piece_size,
        pieces=pieces.finish(),
    )


def _nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def md5_file(path: Path | str) -> str:
    """md5 of a file on this thread: for a small file (a raw source on its way to a store)
    `digest_file`'s two worker threads cost more than the hash (bench/release)."""
    with open(path, "rb", buffering=0) as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def sha256_file(path: Path | str, *, block_size: int = 2**20) -> str:
    """Streaming sha256 of a file (when only that hash is needed)."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(block_size):
            h.update(block)
    return h.hexdigest()
