"""Safe extraction of source archives (zip, tar, tar.gz/bz2/xz).

Refused: absolute paths, `..`, links (symbolic or hard) that point outside the
folder, device files, more entries than `max_entries`, and more uncompressed bytes
than `max_bytes`. Declared sizes are checked before anything is unpacked (a zip bomb
is refused, not unpacked), and the bytes actually written are counted too, so a lying
header cannot get past the cap. Everything is unpacked into a temporary folder beside
`dest` and renamed into place, so a failure leaves nothing that looks complete.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from d4c.errors import D4CError

MAX_BYTES = 32 * 2**30  # 32 GiB uncompressed
MAX_ENTRIES = 100_000
_CHUNK = 2**20


class ArchiveError(D4CError):
    """An archive that is unsafe, too big or unreadable."""


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    """Reject absolute and escaping member names; return the normalised relative path."""
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive.name}: member {name!r} has an absolute path; refused")
    if ".." in rel.parts:
        raise ArchiveError(f"{archive.name}: member {name!r} climbs out with '..'; refused")
    return rel


def _inside(root: Path, target: Path) -> bool:
    root_r = os.path.realpath(root)
    return os.path.commonpath([root_r, os.path.realpath(target)]) == root_r


def _caps(archive: Path, entries: int, total: int, max_entries: int, max_bytes: int) -> None:
    if entries > max_entries:
        raise ArchiveError(
            f"{archive.name}: more than {max_entries} entries; refused as a possible archive bomb"
        )
    if total > max_bytes:
        raise ArchiveError(
            f"{archive.name}: unpacks to more than {max_bytes} bytes; refused as a possible archive bomb"
        )


def _extract_zip(archive: Path, out: Path, max_entries: int, max_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        # Declared sizes first: nothing is unpacked from a bomb.
        _caps(archive, len(infos), sum(i.file_size for i in infos), max_entries, max_bytes)
        written = 0
        for info in infos:
            rel = _safe_name(info.filename, archive)
            target = out / rel
            mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # A symlink extracted earlier could redirect a later member: check the real path.
            if not _inside(out, target.parent):
                raise ArchiveError(f"{archive.name}: member {info.filename!r} leads outside; refused")
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", "surrogateescape")
                if os.path.isabs(link) or not _inside(out, target.parent / link):
                    raise ArchiveError(
                        f"{archive.name}: symlink {info.filename!r} -> {link!r} points outside; refused"
                    )
                os.symlink(link, target)
                continue
            try:
                with zf.open(info) as src, open(target, "xb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        _caps(archive, 0, written, max_entries, max_bytes)
                        dst.write(chunk)
            except FileExistsError:
                raise ArchiveError(f"{archive.name}: member {info.filename!r} appears twice; refused") from None
            # Timestamps from the archive, not the clock: same input, same tree.
            when = datetime(*info.date_time, tzinfo=UTC).timestamp()
            os.utime(target, (when, when))
            if mode & 0o111:
                os.chmod(target, 0o755)


def _extract_tar(archive: Path, out: Path, max_entries: int, max_bytes: int) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            # First pass over the headers only, stopping as soon as a cap is passed.
            members: list[tarfile.TarInfo] = []
            total = 0
            for member in tf:
                members.append(member)
                total += member.size if member.isfile() else 0
                _caps(archive, len(members), total, max_entries, max_bytes)
                _safe_name(member.name, archive)  # links are judged by the filter below
            written = 0

            def data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
                nonlocal written
                try:
                    # The stdlib 'data' filter: no absolute paths, no links out, no devices.
                    safe = tarfile.data_filter(member, dest)
                except tarfile.FilterError as exc:
                    raise ArchiveError(f"{archive.name}: {exc}; refused") from None
                written += member.size if member.isfile() else 0
                _caps(archive, 0, written, max_entries, max_bytes)
                return safe

            tf.extractall(out, members=members, filter=data_filter)
    except tarfile.TarError as exc:
        raise ArchiveError(f"{archive.name}: not a readable tar archive ({exc})") from None


def kind(archive: Path) -> str | None:
    """'zip', 'tar' or None, from the bytes (not the file name)."""
    if zipfile.is_zipfile(archive):
        return "zip"
    try:
        if tarfile.is_tarfile(archive):
            return "tar"
    except (OSError, tarfile.TarError):
        return None
    return None


def extract(
    archive: Path, dest: Path, *, max_entries: int | None = None, max_bytes: int | None = None
) -> Path:
    """Unpack `archive` safely into `dest` (which must not exist yet); return `dest`.

    Caps default to the module's MAX_ENTRIES and MAX_BYTES, read at call time.

    If `dest` appears meanwhile (another process extracted the same archive), the
    existing folder is kept and returned.
    """
    max_entries = MAX_ENTRIES if max_entries is None else max_entries
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    fmt = kind(archive)
    if fmt is None:
        raise ArchiveError(
            f"{archive.name}: not a zip or tar archive",
            hint="set `extract: false` for this source, or check its sha256",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        if fmt == "zip":
            try:
                _extract_zip(archive, tmp, max_entries, max_bytes)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, zlib.error) as exc:
                raise ArchiveError(f"{archive.name}: not a readable zip archive ({exc})") from None
        else:
            _extract_tar(archive, tmp, max_entries, max_bytes)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
