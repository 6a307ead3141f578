"""digest_file: the same hashes as hashlib and the same pieces as torf, from one read."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torf
from d4c import digest
from d4c.digest import digest_file, md5_file, sha256_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KIB = 1024


def torf_pieces(path: Path, piece_size: int) -> bytes:
    t = torf.Torrent(path, piece_size=piece_size, created_by=None, creation_date=None)
    t.generate()
    return bytes(t.metainfo["info"]["pieces"])


@pytest.mark.parametrize("size", [1, 16 * KIB - 1, 16 * KIB, 16 * KIB + 1, 100 * KIB + 7, 2**20])
@pytest.mark.parametrize("piece_size", [16 * KIB, 64 * KIB])
def test_matches_hashlib_and_torf(tmp_path: Path, size: int, piece_size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    d = digest_file(path, piece_size, block_size=24 * KIB)  # blocks straddle piece borders
    assert d.size == size and d.piece_size == piece_size
    assert d.sha256 == hashlib.sha256(data).hexdigest() == sha256_file(path)
    assert d.md5 == hashlib.md5(data).hexdigest() == md5_file(path)
    assert d.pieces == torf_pieces(path, piece_size)
    assert len(d.pieces) == 20 * -(-size // piece_size)
    assert d.pieces_sha1 == d.pieces.hex()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, 70_000), piece_exp=st.integers(14, 16), block=st.integers(1, 90_000))
def test_pieces_for_any_block_size(tmp_path: Path, size: int, piece_exp: int, block: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "h.bin"
    path.write_bytes(data)
    piece = 2**piece_exp
    d = digest_file(path, piece, block_size=block)
    expected = b"".join(hashlib.sha1(data[i : i + piece]).digest() for i in range(0, size, piece))
    assert (d.size, d.sha256, d.pieces) == (size, hashlib.sha256(data).hexdigest(), expected)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e").write_bytes(b"")
    d = digest_file(tmp_path / "e")
    assert (d.size, d.pieces, d.md5) == (0, b"", hashlib.md5(b"").hexdigest())


def test_missing_file_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    import threading

    before = threading.active_count()
    with pytest.raises(FileNotFoundError):
        digest_file(tmp_path / "nope")
    assert threading.active_count() == before


def test_bad_piece_size() -> None:
    with pytest.raises(ValueError):
        digest_file("/dev/null", 0)


def test_memory_is_bounded_whatever_the_file_size(tmp_path: Path) -> None:
    # 64 MiB through the default 4 MiB blocks: peak traced memory stays below the file
    # size (the bound is the queues, not the file). Measured in a fresh process.
    path = tmp_path / "big.bin"
    block = os.urandom(2**20)
    with open(path, "wb") as fh:
        fh.writelines(block for _ in range(64))
    code = (
        "import tracemalloc, sys; from d4c.digest import digest_file; tracemalloc.start();"
        "digest_file(sys.argv[1]); print(tracemalloc.get_traced_memory()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    peak = int(out.stdout)
    # Both workers share each block, so at most depth + 1 per worker + 1 being read.
    bound = (digest.QUEUE_DEPTH + 4) * digest.BLOCK_SIZE
    assert peak <= bound < 64 * 2**20
