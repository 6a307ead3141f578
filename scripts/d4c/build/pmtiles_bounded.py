"""Reading a PMTiles v3 archive that a transform wrote, with bounds.

A transform is untrusted and both the reduce and the host's description of an output read
its archive outside the sandbox: pmtiles' own reader inflates directories, metadata and
tiles without a limit and follows leaf directories without a depth limit, so a gzip bomb or
a leaf pointing at itself would take the d4c process. Past a bound: ValueError.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

# Bounds on what a shard's archive may inflate to: a shard's transform is untrusted and the
# reduce runs outside its sandbox, so a gzip bomb must fail in one line, not fill memory.
# tippecanoe keeps a tile under 500 KB gzipped; these leave ample room above real data.
MAX_TILE_BYTES = 64 << 20
MAX_DIRECTORY_BYTES = 64 << 20
MAX_METADATA_BYTES = 16 << 20
MAX_DIRECTORY_DEPTH = 4  # root and leaves; PMTiles writers use one leaf level


def gunzip(data: bytes, limit: int, what: str) -> bytes:
    """`data` inflated, refusing more than `limit` bytes or a stream that does not end."""
    import zlib

    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"{what} is not gzip ({exc})") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise ValueError(f"{what} inflates past {limit >> 20} MiB")
    if not inflate.eof:
        raise ValueError(f"{what} is a truncated gzip stream")
    return out


def metadata(raw: bytes, header: Any) -> Any:
    """An archive's metadata JSON from its bytes, inflated under MAX_METADATA_BYTES."""
    from pmtiles.tile import Compression

    return json.loads(gunzip(raw, MAX_METADATA_BYTES, "the metadata")
                      if header["internal_compression"] == Compression.GZIP else raw)


def walk(view: Any, header: Any) -> Iterator[tuple[int, bytes]]:
    """(tile id, bytes) of every tile of a PMTiles v3 archive (`view`: its bytes, sliceable),
    in directory order, read with bounds (ValueError past them): the reduce's and the host's
    one reader of a transform's archive."""
    return _walk(view, header, header["root_offset"], header["root_length"], 0)


def _walk(view: Any, header: Any, offset: int, length: int, depth: int) -> Iterator[tuple[int, bytes]]:
    """pmtiles.reader.traverse with bounds: each directory inflated under a limit, leaves at
    most MAX_DIRECTORY_DEPTH deep (a leaf that points back at itself ends in one line)."""
    from pmtiles.tile import Compression, deserialize_directory

    if depth > MAX_DIRECTORY_DEPTH:
        raise ValueError(f"directories nest deeper than {MAX_DIRECTORY_DEPTH} levels")
    raw = view[offset:offset + length]
    if header["internal_compression"] != Compression.GZIP:
        raise ValueError("its directories are not gzip-compressed (tippecanoe's are)")
    gunzip(raw, MAX_DIRECTORY_BYTES, "a directory")  # checked bounded; the parser inflates it again
    for entry in deserialize_directory(raw):
        if entry.run_length > 0:
            data = view[header["tile_data_offset"] + entry.offset:header["tile_data_offset"] + entry.offset + entry.length]
            for i in range(entry.run_length):
                yield entry.tile_id + i, data
        else:
            yield from _walk(view, header, header["leaf_directory_offset"] + entry.offset, entry.length, depth + 1)
