"""Safe extraction: real zip and tar files, hostile ones refused with nothing left behind."""
from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest
from d4c import archive
from d4c.archive import ArchiveError, extract


def make_zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, (2021, 5, 11, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def make_tar(path: Path, mode: str, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_zip_is_extracted_with_archive_timestamps(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "a.zip", {"dir/": b"", "dir/a.csv": b"1,2\n", "top.txt": b"hi"})
    out = extract(arc, tmp_path / "out")
    assert (out / "dir" / "a.csv").read_bytes() == b"1,2\n"
    assert (out / "top.txt").read_bytes() == b"hi"
    assert (out / "top.txt").stat().st_mtime == 1620691200  # 2021-05-11T00:00:00Z, not now


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_flavours_are_extracted(tmp_path: Path, mode: str) -> None:
    arc = make_tar(tmp_path / "a.tar", mode, [
        (member("d", tarfile.DIRTYPE), None),
        (member("d/x.csv"), b"a,b\n"),
        (member("d/link", tarfile.SYMTYPE, "x.csv"), None),
    ])
    out = extract(arc, tmp_path / "out")
    assert (out / "d" / "x.csv").read_bytes() == b"a,b\n"
    assert (out / "d" / "link").is_symlink() and (out / "d" / "link").read_bytes() == b"a,b\n"


def test_zip_internal_symlink_is_kept(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "a.zip", {"data/x.csv": b"1"}, links={"latest": "data/x.csv"})
    out = extract(arc, tmp_path / "out")
    assert (out / "latest").is_symlink() and (out / "latest").read_bytes() == b"1"


@pytest.mark.parametrize("name,reason", [
    ("../evil.txt", "climbs out"),
    ("a/../../evil.txt", "climbs out"),
    ("/etc/evil.txt", "absolute path"),
    ("C:\\evil.txt", "absolute path"),
])
def test_zip_slip_is_refused(tmp_path: Path, name: str, reason: str) -> None:
    arc = make_zip(tmp_path / "slip.zip", {"fine.txt": b"ok", name: b"pwned"})
    with pytest.raises(ArchiveError, match=reason):
        extract(arc, tmp_path / "x" / "out")
    assert leftovers(tmp_path / "x") == []
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("link", ["/etc/passwd", "../../outside", "x/../../../outside"])
def test_zip_symlink_out_is_refused(tmp_path: Path, link: str) -> None:
    arc = make_zip(tmp_path / "l.zip", {"a/f": b"1"}, links={"a/l": link})
    with pytest.raises(ArchiveError, match="points outside"):
        extract(arc, tmp_path / "x" / "out")
    assert leftovers(tmp_path / "x") == []


@pytest.mark.parametrize("info", [
    member("../evil.txt"),
    member("/abs.txt"),
    member("link", tarfile.SYMTYPE, "/etc/passwd"),
    member("link", tarfile.SYMTYPE, "../../outside"),
    member("hard", tarfile.LNKTYPE, "../outside"),
    member("dev", tarfile.CHRTYPE),
], ids=["dotdot", "absolute", "symlink-abs", "symlink-up", "hardlink-up", "device"])
def test_tar_escapes_are_refused(tmp_path: Path, info: tarfile.TarInfo) -> None:
    data = b"x" if info.isfile() else None
    arc = make_tar(tmp_path / "t.tar.gz", "w:gz", [(member("ok.txt"), b"fine"), (info, data)])
    with pytest.raises(ArchiveError, match="refused"):
        extract(arc, tmp_path / "x" / "out")
    assert leftovers(tmp_path / "x") == []


def test_tar_write_through_symlink_is_refused(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "t.tar", "w", [
        (member("sub", tarfile.SYMTYPE, ".."), None),
        (member("sub/escaped.txt"), b"x"),
    ])
    with pytest.raises(ArchiveError):
        extract(arc, tmp_path / "x" / "out")
    assert not (tmp_path / "x" / "escaped.txt").exists()


def test_zip_bomb_is_refused_before_unpacking(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "bomb.zip", {f"z{i}": b"\0" * 2**20 for i in range(8)})
    assert arc.stat().st_size < 100_000
    with pytest.raises(ArchiveError, match="possible archive bomb"):
        extract(arc, tmp_path / "x" / "out", max_bytes=4 * 2**20)
    assert leftovers(tmp_path / "x") == []


def test_zip_declaring_a_huge_size_is_refused_by_default(tmp_path: Path) -> None:
    # Rewrite the central directory so one member declares 100 GiB uncompressed.
    arc = make_zip(tmp_path / "huge.zip", {"a": b"tiny"})
    raw = bytearray(arc.read_bytes())
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = struct.pack("<I", 0xFFFFFFFE)
    (tmp_path / "huge.zip").write_bytes(raw)
    big = sum(i.file_size for i in zipfile.ZipFile(tmp_path / "huge.zip").infolist())
    assert big > 2**32 - 10
    with pytest.raises(ArchiveError, match="possible archive bomb"):
        extract(tmp_path / "huge.zip", tmp_path / "x" / "out", max_bytes=2**31)


def test_zip_understating_its_size_is_refused(tmp_path: Path) -> None:
    # Central directory says 1 MiB, the stream holds 3 MiB: never more than declared is
    # written, and the CRC check then refuses the member; nothing is left behind.
    arc = make_zip(tmp_path / "liar.zip", {"a": b"\1" * 3 * 2**20})
    raw = bytearray(arc.read_bytes())
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = struct.pack("<I", 2**20)
    arc.write_bytes(raw)
    with pytest.raises(ArchiveError, match="not a readable zip archive"):
        extract(arc, tmp_path / "x" / "out", max_bytes=2 * 2**20)
    assert leftovers(tmp_path / "x") == []


def test_tar_bomb_is_refused(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "b.tar.gz", "w:gz", [(member(f"f{i}"), b"\0" * 2**20) for i in range(6)])
    with pytest.raises(ArchiveError, match="possible archive bomb"):
        extract(arc, tmp_path / "x" / "out", max_bytes=3 * 2**20)
    assert leftovers(tmp_path / "x") == []


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_entry_count_cap(tmp_path: Path, fmt: str) -> None:
    if fmt == "zip":
        arc = make_zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(50)})
    else:
        arc = make_tar(tmp_path / "many.tar", "w", [(member(f"f{i}"), b"") for i in range(50)])
    with pytest.raises(ArchiveError, match="more than 10 entries"):
        extract(arc, tmp_path / "x" / "out", max_entries=10)


def test_not_an_archive_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "plain.csv").write_bytes(b"a,b\n")
    with pytest.raises(ArchiveError, match="not a zip or tar archive") as err:
        extract(tmp_path / "plain.csv", tmp_path / "out")
    assert "extract: false" in (err.value.hint or "")


def test_existing_destination_is_kept(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "a.zip", {"a": b"1"})
    first = extract(arc, tmp_path / "out")
    (first / "marker").write_text("kept")
    other = make_zip(tmp_path / "b.zip", {"b": b"2"})
    assert extract(other, tmp_path / "out") == first
    assert (first / "marker").exists() and leftovers(tmp_path) == ["a.zip", "b.zip", "out"]


def test_module_caps_are_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_ENTRIES", 1)
    arc = make_zip(tmp_path / "two.zip", {"a": b"", "b": b""})
    with pytest.raises(ArchiveError, match="more than 1 entries"):
        extract(arc, tmp_path / "out")


# Links judged against each other (issue 9): each of these looks harmless alone.
CHAIN = {"y": ".", "x": "y/..", "x2": "x/.."}


def make_links(path: Path, fmt: str, links: dict[str, str], files: dict[str, bytes] | None = None) -> Path:
    """A real zip or tar holding `files` then the symlinks `links`, in that order."""
    files = files or {}
    if fmt == "zip":
        return make_zip(path.with_suffix(".zip"), files, links=links)
    return make_tar(path.with_suffix(".tar"), "w", [
        *((member(n), data) for n, data in files.items()),
        *((member(n, tarfile.SYMTYPE, t), None) for n, t in links.items()),
    ])


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("order", [["y", "x", "x2"], ["x2", "x", "y"], ["x2", "y", "x"]])
def test_symlink_chain_out_is_refused(tmp_path: Path, fmt: str, order: list[str]) -> None:
    arc = make_links(tmp_path / "chain", fmt, {n: CHAIN[n] for n in order}, {"ok.txt": b"fine"})
    with pytest.raises(ArchiveError) as err:
        extract(arc, tmp_path / "x" / "out")
    line = err.value.line()
    assert "\n" not in line and line.startswith(f"{arc.name}: symlink ")
    assert "points outside the extraction folder; refused" in line
    assert leftovers(tmp_path / "x") == []


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_x2_alone_is_judged_through_the_other_links(tmp_path: Path, fmt: str) -> None:
    # `x2 -> x/..` is fine while x is a folder; it is an escape once x -> y/.. and y -> .
    ok = make_links(tmp_path / "ok", fmt, {"x2": "x/.."}, {"x/f": b"1"})
    assert (extract(ok, tmp_path / "ok_out") / "x2" / "x" / "f").read_bytes() == b"1"
    bad = make_links(tmp_path / "bad", fmt, {"y": ".", "x": "y/..", "x2": "x/.."})
    with pytest.raises(ArchiveError, match="symlink 'x' -> 'y/..' points outside"):
        extract(bad, tmp_path / "bad_out")
    assert not (tmp_path / "bad_out").exists()


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_symlink_chain_inside_is_kept(tmp_path: Path, fmt: str) -> None:
    arc = make_links(tmp_path / "in", fmt, {"here": ".", "a": "b", "b": "data", "up": "data/.."},
                     {"data/f.csv": b"1,2\n"})
    out = extract(arc, tmp_path / "out")
    assert (out / "a" / "f.csv").read_bytes() == b"1,2\n"
    assert (out / "here" / "up" / "data" / "f.csv").read_bytes() == b"1,2\n"
    assert os.readlink(out / "a") == "b"


@pytest.mark.parametrize("fmt", ["zip", "tar"])
@pytest.mark.parametrize("links,why", [
    ({"l": "/etc/passwd"}, "absolute target"),
    ({"abs": "/", "l": "abs/etc"}, "absolute"),
    ({"d": "..", "l": "d"}, "points outside"),
    ({"a": "b", "b": "a"}, "loop of symlinks"),
    ({"l": "..\\..\\evil"}, "backslash"),
], ids=["absolute", "through-absolute", "through-up", "loop", "backslash"])
def test_symlink_targets_refused(tmp_path: Path, fmt: str, links: dict[str, str], why: str) -> None:
    arc = make_links(tmp_path / "l", fmt, links, {"ok.txt": b"fine"})
    with pytest.raises(ArchiveError, match=why):
        extract(arc, tmp_path / "x" / "out")
    assert leftovers(tmp_path / "x") == []


@pytest.mark.filterwarnings("ignore:Duplicate name")  # the zip holds 'f' twice on purpose
@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_member_under_or_over_a_symlink_is_refused(tmp_path: Path, fmt: str) -> None:
    under = make_links(tmp_path / "under", fmt, {"d": "sub"}, {"sub/.keep": b"", "d/f": b"x"})
    with pytest.raises(ArchiveError, match="'d/f' is written through the symlink 'd'"):
        extract(under, tmp_path / "x" / "out")
    over = make_links(tmp_path / "over", fmt, {"f": "g"}, {"f": b"x", "g": b"y"})
    with pytest.raises(ArchiveError, match="'f' appears twice and one is a symlink"):
        extract(over, tmp_path / "x" / "out")
    assert leftovers(tmp_path / "x") == []


def test_tar_hardlink_is_refused_even_inside(tmp_path: Path) -> None:
    arc = make_tar(tmp_path / "h.tar", "w", [(member("ok.txt"), b"fine"),
                                            (member("same.txt", tarfile.LNKTYPE, "ok.txt"), None)])
    with pytest.raises(ArchiveError) as err:
        extract(arc, tmp_path / "x" / "out")
    assert err.value.line() == ("h.tar: member 'same.txt' is a hard link (to 'ok.txt'); "
                                "hard links are refused")
    assert leftovers(tmp_path / "x") == []


def test_zip_symlink_with_a_huge_target_is_refused(tmp_path: Path) -> None:
    arc = make_zip(tmp_path / "big.zip", {}, links={"l": "a/" * 3000})
    with pytest.raises(ArchiveError, match="target longer than 4096 bytes"):
        extract(arc, tmp_path / "x" / "out")
    assert leftovers(tmp_path / "x") == []
