"""BitTorrent through aria2c when it is installed: the data file's own torrent (verified by
its sha256 from the catalog first), with its web seeds, so peers and mirrors both serve.

The torrent is untrusted even with the right sha256 (the catalog may be hostile): only a
single-file torrent whose name is one plain path segment and whose length is the
catalog's `file:size` is handed to aria2c, into a folder of its own, and the result
counts only with the catalog's sha256. aria2c cannot stop at a byte count, so a file
larger than what is left of the day's bandwidth goes over HTTP (resumable) instead.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import torf

from d4c.node.inventory import safe_segment
from d4c.node.store import sha256_of
from d4c.node.transfer import Outcome

TIMEOUT = 600.0  # seconds for one torrent; a run that stalls gives way to HTTP


def client() -> str | None:
    return shutil.which("aria2c")


def fetch(aria2c: str, torrent: Path, work: Path, size: int, sha256: str,
          timeout: float = TIMEOUT) -> tuple[Outcome, Path | None]:
    """Download the torrent's one file into `work`; ("ok", its path) when its sha256 is right."""
    try:
        meta = torf.Torrent.read(torrent)
        name, length = meta.name, meta.size
        single = meta.mode == "singlefile"
    except (torf.TorfError, OSError):
        return Outcome("failed", "not a readable torrent"), None
    if not single or not isinstance(name, str) or not safe_segment(name) or length != size:
        return Outcome("failed", f"torrent is not one file {size} bytes long under a plain name"), None
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cmd = [aria2c, "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
           "--seed-time=0", "--console-log-level=warn", "--summary-interval=0",
           "--allow-overwrite=true", "--auto-file-renaming=false", f"--bt-stop-timeout={int(timeout)}",
           f"--dir={work}", f"--torrent-file={torrent}"]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        return Outcome("failed", "aria2c stalled"), None
    got = work / name
    if proc.returncode != 0 or not got.is_file():
        return Outcome("failed", f"aria2c exit {proc.returncode}"), None
    if got.stat().st_size != size or sha256_of(got) != sha256:
        return Outcome("failed", "torrent download has the wrong sha256"), None
    return Outcome("ok", "verified (BitTorrent)"), got
