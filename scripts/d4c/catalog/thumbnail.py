"""A collection's thumbnail: its versions' footprints on a world grid, as a small PNG.

The catalog holds no data bytes, only extents, so the thumbnail shows where the data
lies rather than what it looks like. Written with zlib alone (no imaging library), at
a fixed compression level: the same extents give the same bytes.
"""
from __future__ import annotations

import struct
import zlib

WIDTH, HEIGHT = 360, 180  # one pixel per degree, plate carrée
_SEA, _GRID, _FILL, _EDGE = (236, 242, 248), (200, 210, 222), (120, 170, 220), (20, 70, 140)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pixel(lon: float, lat: float) -> tuple[int, int]:
    x = int((min(max(lon, -180.0), 180.0) + 180.0) * (WIDTH - 1) / 360.0)
    y = int((90.0 - min(max(lat, -90.0), 90.0)) * (HEIGHT - 1) / 180.0)
    return x, y


def footprint_png(boxes: list[list[float]]) -> bytes:
    """A PNG of each [west, south, east, north] box (CRS84) over a 30-degree grid."""
    rows = [[_GRID if x % 30 == 0 or y % 30 == 0 else _SEA for x in range(WIDTH)]
            for y in range(HEIGHT)]
    for west, south, east, north in (b[:4] for b in boxes):
        x0, y1 = _pixel(west, south)
        x1, y0 = _pixel(east, north)
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                edge = x in (x0, x1) or y in (y0, y1)
                rows[y][x] = _EDGE if edge else _FILL
    raw = b"".join(b"\x00" + bytes(c for px in row for c in px) for row in rows)
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))
