"""PMTiles of a `shards: {by: tile}` build: each shard's part, and the merge of the parts.

A shard runs tippecanoe (geo_writers.write_pmtiles) on the features near its level-Z tiles
(`select`) and keeps only the tiles at zoom >= Z under them (`keep_part`). `finish` (the
reduce, and an unsharded build, which is shard 1 of 1 over every tile) merges the parts by
tile id, refusing a tile outside its shard's tiles or given by two shards, rebuilds every
zoom below Z from its four children (`rebuild`), and writes one archive: tiles in tile-id
order, canonical metadata, the same header whichever shards made it. docs/scale.md.
"""
from __future__ import annotations

import gzip
import heapq
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, groupby, takewhile
from pathlib import Path
from typing import Any, NamedTuple

from d4c import canonical
from d4c.atomic import atomic_open
from d4c.build.pmtiles_bounded import MAX_TILE_BYTES, gunzip, metadata, walk
from d4c.build.tiles import MAX_LAT  # Web Mercator's edge: tippecanoe clamps latitudes beyond it
from d4c.errors import D4CError

# Features whose envelope comes within this much (a fraction of a level-Z tile) of a shard's
# tiles go to its tippecanoe: more than any tile buffer (`-b` is at most 127 of 256 pixels),
# so every tile the shard keeps sees every feature a whole build's tile sees.
MARGIN = 0.5
# tippecanoe's options in a tile shard. `--drop-rate=1` keeps every point at every zoom: the
# default dot-dropping counts features across the whole input, so a shard (a part of it) would
# drop other points than a whole build. No `--drop-densest-as-needed` either, for the same
# reason: a tile too big fails the build instead of dropping features.
TILE_ARGS = ("--force", "--quiet", "--no-progress-indicator", "--drop-rate=1")
BIG = 1e9  # "no bound" for a clip in tile units
# Metadata keys the parts of one build must agree on (they come from the same call).
SHARED_KEYS = ("name", "description", "format", "type", "version", "generator", "generator_options", "minzoom")


@dataclass(frozen=True)
class TileSet:
    """A shard's tiles: (x, y) at zoom `level`; it holds them and their descendants."""

    level: int
    tiles: frozenset[tuple[int, int]]

    @classmethod
    def of(cls, tiles: Iterable[Sequence[int]]) -> TileSet:
        found = [(int(z), int(x), int(y)) for z, x, y in tiles]
        levels = {z for z, _, _ in found}
        if len(levels) > 1:
            raise ValueError(f"a shard's tiles are at one zoom, not {sorted(levels)}")
        return cls(levels.pop() if levels else 0, frozenset((x, y) for _, x, y in found))

    def holds(self, z: int, x: int, y: int) -> bool:
        shift = z - self.level
        return shift >= 0 and (x >> shift, y >> shift) in self.tiles


class Part(NamedTuple):
    """One shard's archive: a name for messages ("shard 2"), its path, its tiles."""

    label: str
    path: Path
    tiles: TileSet


def _base(z: int) -> int:
    """The first tile id of zoom z (PMTiles ids run zoom by zoom, Hilbert order within)."""
    return (4 ** z - 1) // 3


def _zxy(tile_id: int) -> tuple[int, int, int]:
    from pmtiles.tile import tileid_to_zxy

    return tileid_to_zxy(tile_id)


# -- the shard's features and tiles ------------------------------------------------------

def select(geometry: Any, tiles: TileSet, margin: float = MARGIN) -> Any:
    """A boolean mask: the geometries (WGS 84) whose envelope comes within `margin` of a tile
    of the set; a superset of the features in the set's tiles and their buffers."""
    import numpy as np
    import shapely

    bounds = shapely.bounds(np.asarray(geometry))
    if not tiles.tiles or not len(bounds):
        return np.zeros(len(bounds), dtype=bool)
    n = 2 ** tiles.level
    lat = np.radians(np.clip(bounds[:, [3, 1]], -MAX_LAT, MAX_LAT))  # north first: the smaller y
    fy = (1 - np.log(np.tan(lat) + 1 / np.cos(lat)) / math.pi) / 2 * n
    fx = (bounds[:, [0, 2]] + 180) / 360 * n
    xs, ys = (np.array(sorted(v)) for v in zip(*tiles.tiles))
    ox, oy, w, h = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    grid = np.zeros((h + 1, w + 1), dtype=np.int64)  # a summed-area table of the set's tiles
    grid[np.array([y for _, y in tiles.tiles]) - oy + 1, np.array([x for x, _ in tiles.tiles]) - ox + 1] = 1
    grid = grid.cumsum(0).cumsum(1)
    with np.errstate(invalid="ignore"):  # empty geometries have NaN bounds: never selected
        x0, x1 = np.floor(fx[:, 0] - margin) - ox, np.floor(fx[:, 1] + margin) - ox
        y0, y1 = np.floor(fy[:, 0] - margin) - oy, np.floor(fy[:, 1] + margin) - oy
        near = (x1 >= 0) & (x0 < w) & (y1 >= 0) & (y0 < h)
    near &= np.isfinite(bounds).all(axis=1)
    x0, x1 = (np.clip(np.nan_to_num(v), 0, w - 1).astype(np.int64) for v in (x0, x1))
    y0, y1 = (np.clip(np.nan_to_num(v), 0, h - 1).astype(np.int64) for v in (y0, y1))
    count = grid[y1 + 1, x1 + 1] - grid[y0, x1 + 1] - grid[y1 + 1, x0] + grid[y0, x0]
    return near & (count > 0)


def keep_part(raw: Path | None, tiles: TileSet, dest: Path, name: str, min_zoom: int) -> None:
    """The shard's part from tippecanoe's archive `raw` (None: no features came near): only
    the tiles the set holds, and the metadata the merge needs, canonical."""
    meta: dict[str, Any] = {"name": name, "description": name, "minzoom": str(min_zoom), "vector_layers": []}
    if raw is None:
        write_archive(dest, (), (0, 0, 0, 0), min_zoom, meta)
        return
    header, found = _read(raw, "tippecanoe's output")
    keys = ("format", "type", "version", "generator", "generator_options", "vector_layers")
    meta.update({k: found[k] for k in keys if k in found})
    bounds = (header["min_lon_e7"], header["min_lat_e7"], header["max_lon_e7"], header["max_lat_e7"])
    kept = ((t, d) for t, d in _tiles(raw, "tippecanoe's output") if tiles.holds(*_zxy(t)))
    write_archive(dest, kept, bounds, min_zoom, meta)


# -- reading an archive ------------------------------------------------------------------

def _refuse(path: Path, label: str, why: str) -> D4CError:
    return D4CError(f"{path}: {label}'s PMTiles {why}",
                    hint="rebuild it with `d4c build ID --shard N/M` (a PMTiles v3 archive of gzip MVT tiles)")


def _read(path: Path, label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, metadata) of a PMTiles v3 archive of gzip-compressed MVT tiles, or one line."""
    from pmtiles.tile import (
        Compression,
        MagicNumberNotFound,
        SpecVersionUnsupported,
        TileType,
        deserialize_header,
    )

    try:
        with open(path, "rb") as fh:
            head = fh.read(127)
            header: dict[str, Any] = dict(deserialize_header(head))
            fh.seek(header["metadata_offset"])
            meta = metadata(fh.read(header["metadata_length"]), header)
    except (MagicNumberNotFound, SpecVersionUnsupported):
        raise _refuse(path, label, "is not a PMTiles v3 archive") from None
    except Exception as exc:  # noqa: BLE001 - any fault of a hostile file is one line
        raise _refuse(path, label, f"is unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None
    if header["tile_type"] != TileType.MVT or header["tile_compression"] != Compression.GZIP:
        raise _refuse(path, label, f"holds {header['tile_type'].name} tiles, {header['tile_compression'].name}, "
                      "not gzip MVT")
    if not isinstance(meta, dict) or not _layers_ok(meta.get("vector_layers", [])):
        raise _refuse(path, label, "has metadata that is not a JSON object with a vector_layers list of "
                      "{id, minzoom, maxzoom, fields}")
    return header, meta


def _layers_ok(layers: Any) -> bool:
    """vector_layers as tippecanoe writes them: the merge reads these keys."""
    return isinstance(layers, list) and all(
        isinstance(v, dict) and isinstance(v.get("id"), str) and isinstance(v.get("fields", {}), dict)
        and all(isinstance(k, str) and isinstance(t, str) for k, t in v.get("fields", {}).items())
        and all(isinstance(v.get(k), int) and not isinstance(v.get(k), bool) for k in ("minzoom", "maxzoom"))
        for v in layers)


def _tiles(path: Path, label: str) -> Iterator[tuple[int, bytes]]:
    """(tile id, bytes) in tile-id order, each id once, or one line."""
    import mmap

    from pmtiles.tile import deserialize_header

    last = -1
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            header = deserialize_header(view[0:127])
            for tile_id, data in walk(view, header):
                if tile_id <= last:
                    raise _refuse(path, label, f"lists tile {'/'.join(map(str, _zxy(tile_id)))} out of order or twice")
                last = tile_id
                yield tile_id, data
    except D4CError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt directory may fail in many ways
        raise _refuse(path, label, f"is unreadable ({type(exc).__name__}: {str(exc)[:120]})") from None


def _checked(part: Part) -> Iterator[tuple[int, str, bytes]]:
    """The part's tiles, each inside the part's own tile set."""
    for tile_id, data in _tiles(part.path, part.label):
        z, x, y = _zxy(tile_id)
        if not part.tiles.holds(z, x, y):
            raise _refuse(part.path, part.label, f"holds tile {z}/{x}/{y}, outside its tiles (zoom >= "
                          f"{part.tiles.level} under its {len(part.tiles.tiles)} level-{part.tiles.level} tiles)")
        yield tile_id, part.label, data


def merged(parts: Sequence[Part]) -> Iterator[tuple[int, bytes]]:
    """Every part's tiles in tile-id order; a tile id from two parts is refused."""
    last, owner = -1, ""
    for tile_id, label, data in heapq.merge(*(_checked(p) for p in parts), key=lambda t: t[0]):
        if tile_id == last:
            z, x, y = _zxy(tile_id)
            raise D4CError(f"tile {z}/{x}/{y} comes from both {owner} and {label}",
                           hint="each shard keeps only its own tiles: rebuild those shards")
        last, owner = tile_id, label
        yield tile_id, data


# -- the low zooms, from their children --------------------------------------------------

def _own(geoms: Any, dx: int, dy: int, half: float) -> Any:
    """The parts of a child's geometries (in parent units) in the child's quadrant of the
    parent (beyond the parent's edges included), None where nothing is left: each place
    belongs to one child, so a feature that two children hold (one in its buffer) comes out
    once. Points are kept half-open, so a point on the split is one child's."""
    import numpy as np
    import shapely

    x0, x1 = (-BIG, half) if dx == 0 else (half, BIG)
    y0, y1 = (-BIG, half) if dy == 0 else (half, BIG)
    out = np.full(len(geoms), None, dtype=object)
    kinds = shapely.get_type_id(geoms)
    dims = shapely.get_dimensions(geoms)
    pieces, index = shapely.get_parts(np.where(np.isin(kinds, (0, 4)), geoms, None), return_index=True)
    x, y = shapely.get_x(pieces), shapely.get_y(pieces)
    inside = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    shapely.multipoints(pieces[inside], indices=index[inside], out=out)
    clipped = shapely.clip_by_rect(np.where(np.isin(kinds, (1, 2, 3, 5, 6)), geoms, None), x0, y0, x1, y1)
    pieces, index = shapely.get_parts(clipped, return_index=True)
    keep = ~shapely.is_empty(pieces) & (shapely.get_dimensions(pieces) == dims[index])
    for dim, make in ((1, shapely.multilinestrings), (2, shapely.multipolygons)):
        chosen = keep & (dims[index] == dim)
        make(pieces[chosen], indices=index[chosen], out=out)
    return out


def _placed(layer: dict[str, Any], dx: int, dy: int, extent: int) -> Any:
    """A decoded child layer's geometries in the parent's tile units, owned parts only,
    rounded to the parent's grid (None where nothing is left)."""
    import numpy as np
    import shapely
    from shapely.geometry import shape

    child = int(layer["extent"])
    geoms = np.empty(len(layer["features"]), dtype=object)
    geoms[:] = [shape(f["geometry"]) for f in layer["features"]]
    geoms = shapely.transform(geoms, lambda c: (c + (dx * child, dy * child)) * (extent / (2 * child)))
    return shapely.transform(_own(geoms, dx, dy, extent / 2), np.round)


def _decode(tile_id: int, data: bytes) -> dict[str, Any]:
    """A child tile's layers, or one line (a shard's tile that is not gzip MVT)."""
    import mapbox_vector_tile

    try:
        layers = mapbox_vector_tile.decode(gunzip(data, MAX_TILE_BYTES, "the tile"), default_options={"y_coord_down": True})
        if all(isinstance(v["extent"], int) and 0 < v["extent"] <= 1 << 16 for v in layers.values()):
            return dict(layers)
        why = "a layer extent outside 1..65536"
    except Exception as exc:  # noqa: BLE001 - a hostile tile may fail the decoder in many ways
        why = f"{type(exc).__name__}: {str(exc)[:100]}"
    z, x, y = _zxy(tile_id)
    raise D4CError(f"tile {z}/{x}/{y} of the shards' PMTiles is not a gzip MVT tile ({why})",
                   hint="rebuild the shard that holds it")


def rebuild(children: Sequence[tuple[int, bytes]]) -> bytes | None:
    """A parent tile (gzip MVT) from its children's (tile id, gzip MVT): every child feature
    scaled into the parent, cut to the child's quadrant, merged per layer; a feature equal in
    layer, id, geometry and properties to one of another child's is dropped. None if empty."""
    import mapbox_vector_tile
    import shapely

    decoded = [(_zxy(t), _decode(t, d)) for t, d in children]
    extents: dict[str, int] = {}
    for _, layers in decoded:
        for name, layer in layers.items():
            extents[name] = max(extents.get(name, 0), int(layer["extent"]))
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in extents}
    seen: Counter[tuple[Any, ...]] = Counter()
    for (_, x, y), layers in decoded:
        local: Counter[tuple[Any, ...]] = Counter()
        for name, layer in layers.items():
            geoms = _placed(layer, x & 1, y & 1, extents[name])
            for feature, geom, wkb in zip(layer["features"], geoms, shapely.to_wkb(geoms)):
                if geom is None or geom.is_empty:
                    continue
                fid = feature.get("id") or None  # the decoder gives 0 for a feature without an id
                key = (name, fid, wkb, json.dumps(feature["properties"], sort_keys=True))
                local[key] += 1
                if local[key] > seen[key]:
                    out[name].append({"geometry": geom, "properties": feature["properties"],
                                      **({"id": fid} if fid is not None else {})})
        seen |= local
    layers_out = [{"name": n, "features": out[n]} for n in sorted(out) if out[n]]
    if not layers_out:
        return None
    data = mapbox_vector_tile.encode(layers_out, per_layer_options={n: {"extents": extents[n]} for n in extents},
                                     default_options={"y_coord_down": True})
    return gzip.compress(data, compresslevel=9, mtime=0)


def low_zooms(parts: Sequence[Part], level: int, min_zoom: int) -> dict[int, bytes]:
    """Every tile at zooms min_zoom..level-1, each from its four children, level by level."""
    low: dict[int, bytes] = {}
    below = _base(level + 1)
    children: Iterable[tuple[int, bytes]] = takewhile(lambda t: t[0] < below, merged(parts))
    for z in range(level - 1, min_zoom - 1, -1):
        made: dict[int, bytes] = {}
        first = _base(z + 1)
        for h, group in groupby(children, key=lambda t: (t[0] - first) // 4):
            tile = rebuild(list(group))
            if tile is not None:
                made[_base(z) + h] = tile
        low.update(made)
        children = sorted(made.items())
    return low


# -- the archive -------------------------------------------------------------------------

def _layers(metas: Sequence[dict[str, Any]], level: int, min_zoom: int) -> list[dict[str, Any]]:
    """vector_layers of all parts: zoom ranges widened, fields united (a field of two types is
    "Mixed", as tippecanoe says); a layer present at the level is in every rebuilt zoom."""
    layers: dict[str, dict[str, Any]] = {}
    for meta in metas:
        for layer in meta.get("vector_layers", []):
            have = layers.setdefault(layer["id"], {**layer, "fields": {}})
            have["minzoom"] = min(have["minzoom"], layer["minzoom"])
            have["maxzoom"] = max(have["maxzoom"], layer["maxzoom"])
            for field, kind in layer.get("fields", {}).items():
                have["fields"][field] = kind if have["fields"].get(field, kind) == kind else "Mixed"
    for layer in layers.values():
        if layer["minzoom"] <= level:
            layer["minzoom"] = min(layer["minzoom"], min_zoom)
    return [layers[k] for k in sorted(layers)]


def _metadata(parts: Sequence[Part]) -> tuple[dict[str, Any], tuple[int, int, int, int]]:
    """The merged archive's metadata and header bounds (e7) from the parts'; the parts of one
    build agree on everything but their layers and bounds."""
    found = [_read(p.path, p.label) + (p,) for p in parts]
    meta: dict[str, Any] = {}
    for _, m, p in found:
        for key in SHARED_KEYS:
            if key in m and meta.setdefault(key, m[key]) != m[key]:
                raise _refuse(p.path, p.label, f"says {key} {str(m[key])[:80]!r}, another shard "
                              f"{str(meta[key])[:80]!r}: the shards ran different tippecanoe calls")
    zoom = meta.get("minzoom")
    if not (isinstance(zoom, str) and zoom.isdigit() and int(zoom) <= 30):
        raise _refuse(parts[0].path, parts[0].label, f"says minzoom {str(zoom)[:20]!r}, not a zoom")
    with_tiles = [h for h, _, _ in found if h["tile_entries_count"]]
    # tippecanoe's bounds of the features near each part's tiles (all of them: the union is a whole
    # build's, even where a part kept no tile); a part whose tippecanoe never ran has none.
    ran = [h for h, m, _ in found if "generator" in m]
    bounds = (min(h["min_lon_e7"] for h in ran), min(h["min_lat_e7"] for h in ran),
              max(h["max_lon_e7"] for h in ran), max(h["max_lat_e7"] for h in ran)) if ran else (0, 0, 0, 0)
    level = parts[0].tiles.level
    meta["vector_layers"] = _layers([m for _, m, _ in found], level, int(zoom))
    # Strings, as MBTiles metadata and tippecanoe's readers (tile-join, tippecanoe-decode) want them.
    meta["maxzoom"] = str(max((h["max_zoom"] for h in with_tiles), default=int(zoom)))
    meta["bounds"] = ",".join(f"{b / 1e7:.7f}" for b in bounds)
    meta["center"] = f"{(bounds[0] + bounds[2]) / 2e7:.7f},{(bounds[1] + bounds[3]) / 2e7:.7f},{zoom}"
    meta["d4c:rebuilt_below"] = str(level)
    return meta, bounds


def finish(parts: Sequence[Part], dest: Path) -> None:
    """The artifact from every shard's part: merged by tile id, the zooms below the level
    rebuilt from their children (down to the parts' `minzoom`), written deterministically."""
    levels = {p.tiles.level for p in parts}
    if len(levels) != 1:
        raise D4CError(f"the shards' tiles are at several zooms {sorted(levels)}", hint="rebuild them from one recipe")
    level = levels.pop()
    meta, bounds = _metadata(parts)
    low = low_zooms(parts, level, int(meta["minzoom"]))
    # The low zooms' ids all come before the level's: one stream, in tile-id order, never held whole.
    write_archive(dest, chain(sorted(low.items()), merged(parts)), bounds, int(meta["minzoom"]), meta)


def merge(output: Any, shard_files: Sequence[Any], dest: Path) -> None:
    """shard_reduce's reducer for PMTiles (`reduce: {method: tile_merge}`): every shard's part
    (shard_reduce.ShardFile: index, path, the shard's tiles) into the artifact."""
    untiled = [f.shard for f in shard_files if not f.tiles]
    if untiled:
        raise D4CError(f"{output.name}: shard {untiled[0]}'s manifest lists no tiles; the PMTiles merge needs "
                       "`shards: {by: tile}`", hint="partition the recipe with `shards: {by: tile, level: Z}`")
    finish([Part(f"shard {f.shard}", f.path, TileSet.of(f.tiles)) for f in shard_files], dest)


def write_archive(dest: Path, tiles: Iterable[tuple[int, bytes]], bounds: tuple[int, int, int, int],
                  center_zoom: int, meta: dict[str, Any]) -> None:
    """A PMTiles v3 archive of gzip MVT tiles given in tile-id order; metadata canonical (keys
    sorted), header fixed by the tiles, `bounds` (e7) and `center_zoom`."""
    from pmtiles.tile import Compression, TileType, serialize_directory, serialize_header
    from pmtiles.writer import Writer

    header: dict[str, Any] = {
        "tile_type": TileType.MVT, "tile_compression": Compression.GZIP, "min_lon_e7": bounds[0],
        "min_lat_e7": bounds[1], "max_lon_e7": bounds[2], "max_lat_e7": bounds[3], "center_zoom": center_zoom,
        "center_lon_e7": (bounds[0] + bounds[2]) // 2, "center_lat_e7": (bounds[1] + bounds[3]) // 2}
    doc = json.loads(canonical.encode(meta))  # keys sorted, the order json.dumps keeps
    with atomic_open(dest, "wb", durable=False) as fh:  # a build folder, published whole by the pipeline
        writer = Writer(fh)
        for tile_id, data in tiles:
            writer.write_tile(tile_id, data)
        if writer.tile_entries:
            writer.finalize(header, doc)
        else:  # the library cannot write an archive without tiles
            root, packed = serialize_directory([]), gzip.compress(json.dumps(doc).encode(), mtime=0)
            end = 127 + len(root) + len(packed)
            header.update(root_offset=127, root_length=len(root), metadata_offset=127 + len(root),
                          metadata_length=len(packed), leaf_directory_offset=end, tile_data_offset=end,
                          tile_data_length=0, clustered=True, internal_compression=Compression.GZIP,
                          min_zoom=0, max_zoom=0)
            fh.write(serialize_header(header) + root + packed)  # type: ignore[arg-type]

