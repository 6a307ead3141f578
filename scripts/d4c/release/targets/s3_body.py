"""The bytes of an S3 request, apart from the client: the exact-size streamed body of a PUT
or part, and the part checksums (CRC32 by ISA-L, or SHA-256) read in 1 MiB blocks so that
no part is held in memory. Used by d4c.release.targets.s3."""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from isal import isal_zlib  # ISA-L's CRC32: 4x zlib's here, the same values

from d4c.errors import D4CError

MiB = 1 << 20


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def part_digest(algo: str, data: bytes) -> bytes:
    if algo == "CRC32":
        return isal_zlib.crc32(data).to_bytes(4, "big")
    return hashlib.sha256(data).digest()


def range_digest(algo: str, path: Path, start: int, length: int) -> bytes:
    """The part checksum of `length` bytes at `start`, read in 1 MiB blocks (no part in memory)."""
    crc, sha = 0, hashlib.sha256()
    view = memoryview(bytearray(MiB))
    with path.open("rb", buffering=0) as fh:
        fh.seek(start)
        while length > 0:
            n = fh.readinto(view[:min(length, MiB)])
            if not n:
                raise D4CError(f"{path} shrank while it was uploaded", hint="rebuild, then rerun")
            if algo == "CRC32":
                crc = isal_zlib.crc32(view[:n], crc)
            else:
                sha.update(view[:n])
            length -= n
    return crc.to_bytes(4, "big") if algo == "CRC32" else sha.digest()


class FileBody:
    """A request's body: exactly `size` bytes of `path` from `start` (a PUT: all of it; a
    part: its range), streamed, seekable (a retry rewinds it). A file cut short mid-send
    raises at once: http.client would send fewer bytes than the Content-Length and wait for
    an answer until the read timeout, on every attempt."""

    def __init__(self, path: Path, size: int, start: int = 0) -> None:
        self._fh, self._size, self._start = path.open("rb"), size, start
        self._fh.seek(start)

    def __len__(self) -> int:
        return self._size

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self.tell())
        want = left if n is None or n < 0 else min(n, left)
        data = self._fh.read(want)
        if len(data) < want:
            raise D4CError(f"{self._fh.name} shrank while it was uploaded", hint="rebuild, then rerun")
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            return self._fh.seek(self._start + pos) - self._start
        return self._fh.seek(pos, whence) - self._start

    def tell(self) -> int:
        return self._fh.tell() - self._start

    def close(self) -> None:
        self._fh.close()
