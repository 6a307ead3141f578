"""What the host accepts from a transform's output folder, checked without following links.

A transform is untrusted, and so is what it leaves: a symlink to a host file, a hard
link to one, a FIFO that blocks the reader, a file nobody declared. Every entry is
examined with lstat before anything opens it: a regular file with one link, named
as the recipe declares. Then ownership returns to d4c, so nothing of the sandbox's
user can change the files between this check and the hashing.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from d4c.errors import D4CError

_KINDS = ((stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "special file")


def accept(stage: Path, declared: list[str], where: str) -> None:
    """Raise one clear error unless `stage` holds exactly the declared regular files."""
    st = os.lstat(stage)
    if not stat.S_ISDIR(st.st_mode):
        raise D4CError(f"the output folder was replaced by a {_kind(st.st_mode)}", where=where)
    found: set[str] = set()
    with os.scandir(stage) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            st = os.lstat(entry.path)
            shown = entry.name.encode("unicode_escape").decode()[:200]
            if entry.name not in declared:
                raise D4CError(f"the transform left an undeclared {_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'file'} "
                               f"{shown!r} in its output folder", where=where,
                               hint="write only the outputs recipe.yaml declares; use /tmp for scratch files")
            if not stat.S_ISREG(st.st_mode):
                raise D4CError(f"output {shown} is a {_kind(st.st_mode)}, not a regular file", where=where,
                               hint="write the file itself (a link is never followed)")
            if st.st_nlink != 1:
                raise D4CError(f"output {shown} has {st.st_nlink} hard links; an output must be a file of its own",
                               where=where)
            found.add(entry.name)
    missing = sorted(set(declared) - found)
    if missing:
        raise D4CError(f"the transform did not write the declared output(s) {missing}", where=where)
    uid, gid = os.geteuid(), os.getegid()
    for name in sorted(found):
        os.chown(stage / name, uid, gid, follow_symlinks=False)
        os.chmod(stage / name, 0o644, follow_symlinks=False)
    os.chown(stage, uid, gid, follow_symlinks=False)
    os.chmod(stage, 0o755)

