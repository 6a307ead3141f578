"""fetch_sources against a real local HTTP server: every outcome asserted."""
from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from d4c import fetch
from d4c.errors import D4CError
from d4c.recipe import Recipe, Source
from test_fetch_server import SourceServer

DATASET = "ca_test_fetch"
BODY = os.urandom(300_000)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with SourceServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_env_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("D4C_MIRRORS", raising=False)


def make_recipe(tmp_path: Path, *sources: Source) -> Recipe:
    folder = tmp_path / "repo" / "datasets" / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    return Recipe(path=folder / "recipe.yaml", data={"id": DATASET, "version": "1.0.0"},
                  sha256="0" * 64, sources=sources)


def src(url: str | None = None, body: bytes = BODY, **kw: object) -> Source:
    return Source(name=str(kw.pop("name", "data")), sha256=hashlib.sha256(body).hexdigest(),
                  size=len(body), url=url, **kw)  # type: ignore[arg-type]


def run(recipe: Recipe, **kw: object) -> dict[str, Path]:
    return fetch.fetch_sources(recipe, backoff_factor=0.01, progress=False, **kw)  # type: ignore[arg-type]


def leftovers() -> list[Path]:
    return list((fetch.paths.cache_dir() / "tmp").glob("*.part"))


def test_download_is_verified_cached_and_reused(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY, latency=0.05)
    rec = make_recipe(tmp_path, src(url))
    got = run(rec)
    assert got == {"data": fetch.cache_path(SHA)}
    assert got["data"].read_bytes() == BODY
    assert run(rec) == got
    assert len(server.requests_for("/data.bin")) == 1  # the second run used the cache


def test_429_retry_after_is_honoured(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY, statuses=[429], retry_after="1")
    started = time.monotonic()
    assert run(make_recipe(tmp_path, src(url)))["data"].read_bytes() == BODY
    assert time.monotonic() - started >= 0.9
    assert len(server.requests_for("/data.bin")) == 2


def test_503_is_retried_then_served(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY, statuses=[503, 503, 502])
    assert run(make_recipe(tmp_path, src(url)))["data"].read_bytes() == BODY
    assert len(server.requests_for("/data.bin")) == 4


def test_persistent_503_gives_up_with_one_line(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY, statuses=[503] * 20)
    with pytest.raises(D4CError) as err:
        run(make_recipe(tmp_path, src(url)), retries=2)
    assert f"{url}: HTTP 503" in err.value.message
    assert len(server.requests_for("/data.bin")) == 3  # bounded: 1 + 2 retries
    assert "\n" not in err.value.line()


def test_connection_reset_resumes_with_range(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY, resets=2, reset_at=100_000)
    assert run(make_recipe(tmp_path, src(url)))["data"].read_bytes() == BODY
    # Each cut-off response delivered 100,000 bytes; each retry asked only for the rest.
    assert server.requests_for("/data.bin") == [None, "bytes=100000-", "bytes=200000-"]
    assert not leftovers()


def test_partial_file_is_resumed_with_range(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY)
    part = fetch.paths.cache_dir() / "tmp" / f"{SHA}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(BODY[:123_456])
    assert run(make_recipe(tmp_path, src(url)))["data"].read_bytes() == BODY
    assert server.requests_for("/data.bin") == ["bytes=123456-"]


def test_server_without_range_support_restarts_cleanly(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY, ranges=False)
    part = fetch.paths.cache_dir() / "tmp" / f"{SHA}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(BODY[:5000])
    assert run(make_recipe(tmp_path, src(url)))["data"].read_bytes() == BODY


def test_stale_partial_with_bad_bytes_is_redone_from_zero(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY)
    part = fetch.paths.cache_dir() / "tmp" / f"{SHA}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 5000)
    assert run(make_recipe(tmp_path, src(url)))["data"].read_bytes() == BODY
    assert server.requests_for("/data.bin") == ["bytes=5000-", None]


def test_wrong_byte_is_never_stored(tmp_path: Path, server: SourceServer) -> None:
    bad = bytearray(BODY)
    bad[1000] ^= 0xFF
    url = server.add("/data.bin", bytes(bad))
    with pytest.raises(D4CError) as err:
        run(make_recipe(tmp_path, src(url)))
    msg = err.value.message
    for part in (DATASET, "'data'", url, SHA, hashlib.sha256(bad).hexdigest()):
        assert part in msg
    assert not fetch.cache_path(SHA).exists()
    assert not leftovers()


def test_404_is_one_clear_line(tmp_path: Path, server: SourceServer) -> None:
    url = server.base + "/missing.bin"
    with pytest.raises(D4CError) as err:
        run(make_recipe(tmp_path, src(url)))
    assert f"{url}: HTTP 404 Not Found" in err.value.message
    assert DATASET in err.value.message


@pytest.mark.parametrize("content_length", [True, False])
def test_more_bytes_than_declared_are_refused(
    tmp_path: Path, server: SourceServer, content_length: bool
) -> None:
    url = server.add("/data.bin", BODY + b"extra" * 100_000, content_length=content_length)
    with pytest.raises(D4CError, match="more than the 300000 (bytes )?the recipe declares"):
        run(make_recipe(tmp_path, src(url)))
    assert not leftovers()


def test_dns_failure_is_named(tmp_path: Path) -> None:
    with pytest.raises(D4CError, match="DNS lookup failed"):
        run(make_recipe(tmp_path, src("http://no-such-host.invalid/data.bin")), retries=0)


def test_tls_failure_is_named(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY).replace("http://", "https://")
    with pytest.raises(D4CError, match="TLS handshake failed"):
        run(make_recipe(tmp_path, src(url)), retries=0)


def test_alternate_url_is_tried_after_the_main_one(tmp_path: Path, server: SourceServer) -> None:
    alt = server.add("/alt.bin", BODY)
    rec = make_recipe(tmp_path, src(server.base + "/gone.bin", alternate_urls=(alt,)))
    assert run(rec)["data"].read_bytes() == BODY


def test_parallel_downloads_overlap(tmp_path: Path, server: SourceServer) -> None:
    sources = []
    for i in range(4):
        body = BODY[:1000] + bytes([i])
        sources.append(src(server.add(f"/s{i}", body, latency=0.4), body, name=f"s{i}"))
    got = run(make_recipe(tmp_path, *sources), jobs=4)
    assert len(got) == 4
    assert server.max_in_flight >= 2  # one at a time would never have two in flight


def test_corrupt_cache_entry_is_fetched_again(tmp_path: Path, server: SourceServer) -> None:
    url = server.add("/data.bin", BODY)
    rec = make_recipe(tmp_path, src(url))
    cached = run(rec)["data"]
    cached.chmod(0o644)
    cached.write_bytes(b"rot")
    assert run(rec)["data"].read_bytes() == BODY
    assert len(server.requests_for("/data.bin")) == 2


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_archive_source_is_extracted(tmp_path: Path, server: SourceServer) -> None:
    body = _zip({"a/b.csv": b"x,y\n1,2\n"})
    rec = make_recipe(tmp_path, src(server.add("/a.zip", body), body, extract=True))
    out = run(rec)["data"]
    assert out == fetch.extracted_path(hashlib.sha256(body).hexdigest())
    assert (out / "a" / "b.csv").read_bytes() == b"x,y\n1,2\n"


def test_zip_slip_source_is_refused(tmp_path: Path, server: SourceServer) -> None:
    body = _zip({"ok.txt": b"fine", "../../evil.txt": b"pwned"})
    rec = make_recipe(tmp_path, src(server.add("/slip.zip", body), body, extract=True))
    with pytest.raises(D4CError, match=r"climbs out with '\.\.'"):
        run(rec)
    assert not fetch.extracted_path(hashlib.sha256(body).hexdigest()).exists()
    assert not list((fetch.paths.cache_dir() / "extracted").iterdir())
    assert not (tmp_path / "evil.txt").exists()


def test_zip_bomb_source_is_refused(
    tmp_path: Path, server: SourceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _zip({"zeros.bin": b"\0" * (40 * 2**20)})  # 40 MiB of zeros in ~40 KiB
    sha = hashlib.sha256(body).hexdigest()
    rec = make_recipe(tmp_path, src(server.add("/bomb.zip", body), body, extract=True))
    monkeypatch.setattr(fetch.archive, "MAX_BYTES", 2**20)  # the 32 GiB default, scaled down
    with pytest.raises(D4CError, match="possible archive bomb"):
        run(rec)
    assert not fetch.extracted_path(sha).exists()
    assert fetch.cache_path(sha).exists()  # the archive itself was fine bytes; only unpacking is refused


def test_concurrent_fetches_of_one_hash_download_once(tmp_path: Path, server: SourceServer) -> None:
    import threading

    url = server.add("/data.bin", BODY, latency=0.3)
    rec = make_recipe(tmp_path, src(url))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(run(rec)["data"])) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [fetch.cache_path(SHA)] * 3
    assert len(server.requests_for("/data.bin")) == 1  # the others waited on the lock, then hit the cache


def test_progress_bar_renders(tmp_path: Path, server: SourceServer, capsys: pytest.CaptureFixture[str]) -> None:
    url = server.add("/data.bin", BODY)
    got = fetch.fetch_sources(make_recipe(tmp_path, src(url)), progress=True, backoff_factor=0.01)
    assert got["data"].read_bytes() == BODY
    assert "data" in capsys.readouterr().err
