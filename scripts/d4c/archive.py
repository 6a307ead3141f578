"""Safe extraction of source archives (zip, tar, tar.gz/bz2/xz).

Refused: absolute paths, `..`, symlinks whose target resolves outside the folder
(following the archive's own links, so `y -> .`, `x -> y/..` is caught), members
written through a symlink, hard links (always), device files, more entries than
`max_entries`, and more uncompressed bytes than `max_bytes`. Links are judged from
the member list before anything is unpacked, not from what is on disk meanwhile. Declared sizes are checked before anything is unpacked (a zip bomb
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
_LINK_MAX = 4096  # PATH_MAX: no real symlink target is longer
_SYMLOOP_MAX = 40  # as Linux: more hops than this in one lookup is a loop


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


def _parts(path: str) -> tuple[str, ...]:
    """Path components as the OS reads them ('/' only), without '' and '.'."""
    return tuple(p for p in path.split("/") if p not in ("", "."))


def _resolve_link(archive: Path, name: str, where: tuple[str, ...], target: str,
                  links: dict[tuple[str, ...], str]) -> None:
    """Refuse the symlink `name` (at `where`) unless `target` lands inside the folder.

    Resolved the way the kernel will once everything is unpacked: component by
    component from the link's folder, each component that is another symlink of the
    archive replaced by its target. Any step above the folder's top is an escape, even
    if a later step would come back in (the folder is renamed after extraction).
    """
    def refused(why: str) -> ArchiveError:
        return ArchiveError(f"{archive.name}: symlink {name!r} -> {target!r} {why}; refused")

    if not where:
        raise refused("replaces the extraction folder itself")
    # A backslash is a separator on Windows and a plain character here: refuse the ambiguity.
    if "\\" in target or "\0" in target:
        raise refused("has a backslash or NUL in its target")
    if target.startswith("/"):
        raise refused("points outside (absolute target)")
    here = list(where[:-1])
    todo = list(reversed(_parts(target)))
    hops = 0
    while todo:
        step = todo.pop()
        if step == "..":
            if not here:
                raise refused("points outside the extraction folder")
            here.pop()
            continue
        here.append(step)
        via = links.get(tuple(here))
        if via is None:
            continue
        hops += 1
        if hops > _SYMLOOP_MAX:
            raise refused("is a loop of symlinks")
        if via.startswith("/"):
            raise refused(f"points outside through the absolute symlink {'/'.join(here)!r}")
        here.pop()  # the link's target is read from the link's own folder
        todo.extend(reversed(_parts(via)))


def _check_links(archive: Path, members: list[tuple[str, tuple[str, ...], str | None]]) -> None:
    """Judge every member against the archive's symlinks: (name, path parts, link target or None).

    Members under a symlink and names that collide with one are refused, so each
    symlink sits exactly where its name says and the resolution above is exact.
    """
    links = {parts: target for _, parts, target in members if target is not None}
    seen: set[tuple[str, ...]] = set()
    for name, parts, target in members:
        for i in range(1, len(parts)):
            if parts[:i] in links:
                raise ArchiveError(f"{archive.name}: member {name!r} is written through the symlink "
                                   f"{'/'.join(parts[:i])!r}; refused")
        if parts in seen and parts in links:
            raise ArchiveError(f"{archive.name}: member {name!r} appears twice and one is a symlink; refused")
        seen.add(parts)
        if target is not None:
            _resolve_link(archive, name, parts, target, links)


def _zip_link(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path) -> str:
    """The target stored as a zip symlink's data, read with a cap (the header may lie)."""
    with zf.open(info) as src:
        raw = src.read(_LINK_MAX + 1)
    if len(raw) > _LINK_MAX:
        raise ArchiveError(f"{archive.name}: symlink {info.filename!r} has a target longer than "
                           f"{_LINK_MAX} bytes; refused")
    return raw.decode("utf-8", "surrogateescape")


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
        # Then every name and link target, before anything is written.
        plan: list[tuple[zipfile.ZipInfo, PurePosixPath, str | None]] = []
        for info in infos:
            rel = _safe_name(info.filename, archive)
            # Unix zips keep the mode in the high 16 bits; S_IFLNK there means the data is a target.
            is_link = not info.is_dir() and stat.S_ISLNK(info.external_attr >> 16)
            plan.append((info, rel, _zip_link(zf, info, archive) if is_link else None))
        _check_links(archive, [(i.filename, rel.parts, link) for i, rel, link in plan])
        written = 0
        for info, rel, link in plan:
            target = out / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # Belt and braces on top of _check_links: the real path, as it is on disk now.
            if not _inside(out, target.parent):
                raise ArchiveError(f"{archive.name}: member {info.filename!r} leads outside; refused")
            if link is not None:
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
            if (info.external_attr >> 16) & 0o111:
                os.chmod(target, 0o755)


def _normalise_modes(top: Path) -> None:
    """Folders 0755, files 0644 (0755 when executable), whatever the umask: the same tree on
    every machine, readable by the build sandbox's unprivileged user. Links are left alone."""
    for folder, dirs, files in os.walk(top):
        os.chmod(folder, 0o755)
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)


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
                _safe_name(member.name, archive)
                if member.islnk():
                    # A hard link shares the inode of what it names: never useful in a data
                    # archive, and the classic way to reach a file outside the folder.
                    raise ArchiveError(f"{archive.name}: member {member.name!r} is a hard link "
                                       f"(to {member.linkname!r}); hard links are refused")
            # tarfile joins names to the folder as they are: the parts must be read the same way.
            _check_links(archive, [(m.name, _parts(m.name), m.linkname if m.issym() else None)
                                   for m in members])
            written = 0

            def data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
                nonlocal written
                try:
                    # The stdlib 'data' filter as well: no devices, sane modes, links checked on disk.
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
        _normalise_modes(tmp)
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
