"""The one atomic write: a unique temp file in the destination folder, then a rename.

Readers see the old file or the new one, never half of one; concurrent writers never
share a temp name (`tempfile.mkstemp`), and a failure removes its temp file. A
published file is `durable` (the default): the file is fsynced before the rename and
the folder after it, so the new name survives a power cut. Working files that a rerun
derives again (staging, journal copies) may pass `durable=False`.

- `atomic_write(dest, data=... | src=...)`: bytes, text or a copy of a file;
- `atomic_open(dest, "wb" | "w")`: a file object to write to, published on a clean exit;
- `atomic_path(dest)`: a temp path for writers that want a path (Parquet, torrents).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

MODE = 0o644


def temp_path(dest: Path) -> Path:
    """A new, unique, empty file beside `dest` (its folder is made if needed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    return Path(name)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: Path, dest: Path, durable: bool = True) -> None:
    """Move a finished temp file onto `dest`: fsync it, mode 0644, rename, fsync the folder."""
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    os.chmod(tmp, MODE)
    os.replace(tmp, dest)
    if durable:
        fsync_dir(dest.parent)


@contextmanager
def atomic_path(dest: Path, durable: bool = True) -> Iterator[Path]:
    """A temp path to write; on a clean exit it becomes `dest`, on an error it is removed."""
    tmp = temp_path(dest)
    try:
        yield tmp
        publish(tmp, dest, durable)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(dest: Path, mode: str = "wb", durable: bool = True, **kw: Any) -> Iterator[IO[Any]]:
    """An open temp file (`mode` "wb" or "w"; text mode gets UTF-8 and LF unless told)."""
    if "b" not in mode:
        kw.setdefault("encoding", "utf-8")
        kw.setdefault("newline", "\n")
    with atomic_path(dest, durable) as tmp, open(tmp, mode, **kw) as fh:
        yield fh


def atomic_write(dest: Path, data: bytes | str | None = None, src: Path | None = None,
                 durable: bool = True) -> None:
    """Write `data` (bytes, or text as UTF-8) or a copy of the file `src` to `dest`."""
    with atomic_open(dest, "wb", durable) as out:
        if src is not None:
            with src.open("rb") as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
        elif isinstance(data, str):
            out.write(data.encode("utf-8"))
        else:
            out.write(data or b"")
