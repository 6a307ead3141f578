"""d4c.atomic: readers never see half a file, concurrent writers never share a temp name,
a failed write leaves nothing behind, and the published file is 0644."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from d4c.atomic import atomic_open, atomic_path, atomic_write


def test_write_bytes_text_and_copy(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b.json"
    atomic_write(dest, data="é\n")
    assert dest.read_bytes() == "é\n".encode() and dest.stat().st_mode & 0o777 == 0o644
    atomic_write(tmp_path / "c", src=dest, durable=False)
    assert (tmp_path / "c").read_bytes() == dest.read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.json", "c"]


def test_a_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    atomic_write(dest, data=b"old")
    with pytest.raises(RuntimeError), atomic_open(dest) as fh:
        fh.write(b"half")
        raise RuntimeError("crash mid-write")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert dest.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f"]


def test_concurrent_writers_each_publish_a_whole_file(tmp_path: Path) -> None:
    dest, names = tmp_path / "f", set()
    bodies = [bytes([65 + n]) * 200_000 for n in range(8)]

    def write(body: bytes) -> None:
        with atomic_open(dest) as fh:
            names.add(fh.name)
            for i in range(0, len(body), 10_000):
                fh.write(body[i:i + 10_000])

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(names) == len(bodies)  # a unique temp name each (no fixed `.tmp` to collide on)
    assert dest.read_bytes() in bodies and [p.name for p in tmp_path.iterdir()] == ["f"]
