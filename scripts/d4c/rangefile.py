"""A seekable read-only file over ranged reads (HTTP Range, S3 GetObject Range, a sample's
recorded reads), so pyarrow and zipfile read only the bytes they seek to."""
from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from d4c.errors import D4CError


class RangeFile(io.RawIOBase):
    """A seekable read-only file over ranged reads; counts what it fetched."""

    def __init__(self, size: int, fetch: Callable[[int, int], bytes]) -> None:
        self.size, self._fetch, self._pos = size, fetch, 0
        self.requests = self.bytes_read = 0
        self.ranges: list[tuple[int, int]] = []  # what was fetched: for tests and the bench

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        end = min(self._pos + len(buffer), self.size)
        if end <= self._pos:
            return 0
        data = self._fetch(self._pos, end - 1)  # inclusive, as in a Range header
        if len(data) != end - self._pos:
            raise D4CError(f"short read: asked {end - self._pos} bytes, got {len(data)}")
        buffer[: len(data)] = data
        self.ranges.append((self._pos, end))
        self._pos = end
        self.requests += 1
        self.bytes_read += len(data)
        return len(data)
