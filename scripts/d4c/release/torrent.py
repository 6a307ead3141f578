"""One single-file torrent per artifact, reproducible to the byte.

Piece hashes come from the build's one-read digest (the manifest's `piece_size` and
`pieces_sha1`), so a 50 GB artifact is not read again here. No creation date, a fixed
`created_by`, `private` left unset (False would write `private: 0` and change the
infohash). Web seeds (BEP 19) sit outside the info dict: adding a mirror never changes
the infohash. URLs are percent-encoded by the targets; torf uses them as-is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torf

from d4c.atomic import atomic_path
from d4c.errors import D4CError

CREATED_BY = "d4c"


@dataclass(frozen=True)
class TorrentInfo:
    file: str  # the artifact's file name
    torrent_path: Path
    infohash: str
    magnet: str
    piece_size: int


def _pieces(output: dict[str, Any], artifact: Path) -> tuple[int, bytes]:
    piece_size = int(output.get("piece_size") or 0)
    hexed = output.get("pieces_sha1")
    if piece_size and hexed:
        return piece_size, bytes.fromhex(str(hexed))
    # A manifest from before the one-read digest: hash the pieces now (one extra read).
    from d4c.digest import DEFAULT_PIECE_SIZE, digest_file

    digest = digest_file(artifact, piece_size or DEFAULT_PIECE_SIZE)
    return digest.piece_size, digest.pieces


def make_torrent(artifact: Path, output: dict[str, Any], dest: Path,
                 webseeds: list[str], trackers: list[str]) -> TorrentInfo:
    """Write `dest` (<artifact>.torrent) for one artifact described by a manifest output."""
    piece_size, pieces = _pieces(output, artifact)
    size = artifact.stat().st_size
    if size != int(output["size"]):
        raise D4CError(f"{artifact} is {size} bytes but the manifest says {output['size']}",
                       hint="rebuild: the build folder does not match its manifest")
    expected = -(-size // piece_size)
    if len(pieces) != 20 * expected:
        raise D4CError(f"{output['file']}: manifest has {len(pieces) // 20} piece hashes, "
                       f"expected {expected} for piece size {piece_size}",
                       hint="rebuild: the manifest's pieces_sha1 is stale")
    t = torf.Torrent(
        path=artifact,
        trackers=list(trackers) or None,  # torf puts each URL in its own tier (BEP 12)
        webseeds=webseeds or None,
        private=None,
        created_by=CREATED_BY,
        creation_date=None,
    )
    try:
        t.piece_size = piece_size
    except torf.PieceSizeError as exc:
        raise D4CError(f"{output['file']}: piece size {piece_size} is not usable ({exc})",
                       hint="use a power of two between 16 KiB and 256 MiB") from None
    t.metainfo["info"]["pieces"] = pieces
    with atomic_path(dest, durable=False) as tmp:  # staging: a rerun makes it again
        t.write(tmp, overwrite=True)  # validates the metainfo (piece count vs. length) first
    return TorrentInfo(file=artifact.name, torrent_path=dest, infohash=t.infohash,
                       magnet=str(t.magnet()), piece_size=piece_size)
