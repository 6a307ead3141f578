"""The tracker scrape of `d4c mirrors check` against a real tracker (Debian's opentracker,
whitelist build): seeders per infohash over HTTP (BEP 48) and UDP (BEP 15)."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
import requests
from d4c.mirrors.run import Options, check
from d4c.mirrors.scrape import torrent_facts
from fakes.internet_archive import FakeInternetArchive
from fakes.zenodo import FakeZenodo
from test_mirrors_support import World
from test_release_support import MotoS3, moto_s3  # noqa: F401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tracker(require_tool: Callable[..., str], tmp_path: Path) -> Iterator[tuple[int, Callable[[list[str]], None]]]:
    """(port, whitelist file); opentracker starts on first use through `start`."""
    binary = require_tool("opentracker")
    port = _free_port()
    root = tmp_path / "tracker"
    root.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(infohashes: list[str]) -> None:
        (root / "wl").write_text("".join(h + "\n" for h in infohashes))
        (root / "conf").write_text("access.whitelist /wl\n")  # the path inside its chroot
        procs.append(subprocess.Popen([binary, "-i", "127.0.0.1", "-p", str(port), "-P", str(port),
                                       "-d", str(root), "-f", str(root / "conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            try:
                requests.get(f"http://127.0.0.1:{port}/stats", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("opentracker did not start")

    yield port, start
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def _announce(port: int, infohash: str) -> None:
    ih = quote_from_bytes(bytes.fromhex(infohash), safe="")
    resp = requests.get(f"http://127.0.0.1:{port}/announce?info_hash={ih}&peer_id=-TE0001-aaaaaaaaaaaa"
                        "&port=51413&uploaded=0&downloaded=0&left=0&event=started&compact=1", timeout=5)
    assert resp.status_code == 200 and b"failure" not in resp.content


def test_scrape_gives_seeders_over_http_and_udp(tracker: tuple[int, Callable[[list[str]], None]],
                                               tmp_path: Path, moto_s3: MotoS3) -> None:
    port, start = tracker
    zenodo, ia = FakeZenodo("t"), FakeInternetArchive("a", "s")
    zenodo.start()
    ia.start()
    world = World(tmp_path, moto_s3, zenodo, ia, trackers=(f"http://127.0.0.1:{port}/announce",
                                                          f"udp://127.0.0.1:{port}/announce"))
    try:
        torrent = next(f for f in world.files if f["role"] == "torrent")
        infohash, trackers = torrent_facts(torrent["path"].read_bytes())
        assert len(trackers) == 2
        start([infohash])
        opts = Options(tier=1, date="2026-12-01", retries=1, backoff=0.01)
        rows = [r for r in check(str(world.catalog), opts).rows if r["check"] == "scrape"]
        assert {r["mirror"] for r in rows} == set(trackers)
        assert {r["status"] for r in rows} == {"warning"}  # whitelisted, nobody seeds yet
        assert all("seeders 0" in r["evidence"] for r in rows)
        _announce(port, infohash)
        rows = [r for r in check(str(world.catalog), opts).rows if r["check"] == "scrape"]
        assert {r["status"] for r in rows} == {"ok"}
        assert all(f"infohash {infohash}: seeders 1" in r["evidence"] for r in rows)
    finally:
        world.close()
        zenodo.stop()
        ia.stop()
