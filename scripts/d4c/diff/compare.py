"""Compare one artifact's previous and new versions: hashes, schema, geometry, rows.

Two sources of facts: the files themselves (Parquet read lazily: footer, null counts a
row group at a time, rows scanned by DuckDB; FlatGeobuf streamed with pyogrio into a
temporary Parquet file; CSV with pyarrow; the row-level comparison by primary key runs
in DuckDB within a memory limit, spilling beyond it, so files bigger than memory diff) or the manifest entries, which carry the same
summary facts but no rows: always for COG and PMTiles (their facts are the grid and
the layers, which the manifest holds whole), and when a previous file cannot be fetched.
A PMTiles layer's fields are compared as columns `<layer>.<field>`, a COG's bands as
columns `band_<n>`. Everything returned is plain JSON-able data for render.py.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from d4c.errors import D4CError

MAX_EXAMPLES = 3
IN = "__d4c_present"  # marks the side a joined row came from (no user column is called this)


@dataclass
class Profile:
    """The summary facts of one artifact version."""

    sha256: str | None = None
    size: int | None = None
    rows: int | None = None
    columns: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # name -> (type, nulls)
    geometry_types: list[str] | None = None
    crs: str | None = None
    bbox: list[float] | None = None
    logical: str | None = None
    raster: dict[str, Any] | None = None  # COG: the manifest's `raster` facts
    tiles: dict[str, Any] | None = None  # PMTiles: the manifest's `tiles` facts


def _layer_columns(tiles: dict[str, Any]) -> dict[str, tuple[str, int | None]]:
    return {f"{layer['name']}.{name}": (str(kind), None)
            for layer in tiles.get("layers") or [] for name, kind in (layer.get("fields") or {}).items()}


def profile_manifest(out: dict[str, Any]) -> Profile:
    """Facts from a manifest `outputs[]` entry."""
    cols = {str(c["name"]): (str(c.get("type")), c.get("nulls")) for c in out.get("columns") or []}
    if out.get("tiles"):
        cols.update(_layer_columns(out["tiles"]))
    bbox = out.get("bbox")
    return Profile(
        sha256=out.get("sha256"), size=out.get("size"), rows=out.get("rows"), columns=cols,
        geometry_types=sorted(out["geometry_types"]) if out.get("geometry_types") else None,
        crs=out.get("crs"), bbox=[float(b) for b in bbox] if bbox else None,
        logical=out.get("logical_sha256"), raster=out.get("raster"), tiles=out.get("tiles"),
    )


# Formats whose rows the diff reads from the files themselves.
TABULAR = {"parquet", "geoparquet", "csv", "flatgeobuf", "gpkg"}


# DuckDB's budget for the row comparison (the join spills to a temporary folder beyond it).
JOIN_MEMORY_LIMIT = "1GiB"
BATCH_ROWS = 65536


class ParquetSource:
    """A Parquet artifact read lazily, so files bigger than memory can be compared: the
    schema and row count from the footer, null counts a row group at a time, and the rows
    by DuckDB as its join scans them (`read_parquet`)."""

    def __init__(self, path: Path, keep: Any = None) -> None:
        self.path = path
        self._keep = keep  # a temporary folder the file lives in (FlatGeobuf), removed with us
        pf = pq.ParquetFile(path)
        self.schema: pa.Schema = pf.schema_arrow
        self.num_rows: int = pf.metadata.num_rows
        self._nulls: list[int] | None = None

    def null_counts(self) -> list[int]:
        if self._nulls is None:
            nulls = [0] * len(self.schema)
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                for i, col in enumerate(batch.columns):
                    nulls[i] += col.null_count
            self._nulls = nulls
        return self._nulls


Rows: TypeAlias = "pa.Table | ParquetSource"  # a whole table, or a file read lazily


def _flatgeobuf_as_parquet(path: Path) -> ParquetSource:
    """A FlatGeobuf's rows streamed into a temporary Parquet file (geometry as ISO WKB in
    `geometry`, as geo_facts.read_flatgeobuf gives it), read lazily from there."""
    import tempfile

    import pyogrio

    from d4c.build.geo_facts import GEOMETRY

    work = tempfile.TemporaryDirectory(prefix="d4c-diff-fgb-")
    out = Path(work.name) / "rows.parquet"
    with pyogrio.open_arrow(path, batch_size=BATCH_ROWS) as (meta, stream):
        reader = pa.RecordBatchReader.from_stream(stream)
        geom = meta.get("geometry_name") or "wkb_geometry"
        fields = [pa.field(GEOMETRY if f.name == geom else f.name,
                           pa.binary() if f.name == geom else f.type) for f in reader.schema]
        schema = pa.schema(fields)
        with pq.ParquetWriter(out, schema, compression="zstd", compression_level=1) as writer:
            for batch in reader:
                cols = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in batch.columns]
                writer.write_batch(pa.RecordBatch.from_arrays(cols, names=schema.names).cast(schema))
    return ParquetSource(out, keep=work)


def read_table(path: Path, fmt: str) -> Rows:
    """A Parquet, GeoParquet or FlatGeobuf artifact as a lazily read ParquetSource, a CSV
    as a table; or fail with one line."""
    try:
        if fmt in {"parquet", "geoparquet"}:
            return ParquetSource(path)
        if fmt == "csv":
            return pacsv.read_csv(path)
        if fmt in ("flatgeobuf", "gpkg"):  # both read through GDAL the same way
            return _flatgeobuf_as_parquet(path)
    except (pa.ArrowException, OSError, RuntimeError) as exc:  # GDAL's errors are RuntimeErrors
        raise D4CError(f"{path}: cannot read as {fmt}: {str(exc)[:200]}") from None
    raise D4CError(f"{path}: format {fmt!r} has no tabular diff", hint=f"only {', '.join(sorted(TABULAR))}")


def _null_counts(rows: Rows) -> list[int]:
    if isinstance(rows, ParquetSource):
        return rows.null_counts()
    return [rows.column(i).null_count for i in range(rows.num_columns)]


def _register(con: Any, name: str, rows: Rows) -> None:
    if isinstance(rows, ParquetSource):
        src = str(rows.path).replace("'", "''")
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{src}')")
    else:
        con.register(name, rows)


def _crs_name(crs: Any) -> str | None:
    if crs is None:
        return None
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception:  # noqa: BLE001 - an unreadable CRS is still reported, by name
        return str(crs.get("name") if isinstance(crs, dict) else crs)[:80]
    auth = c.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else c.name


def profile_table(table: Rows, base: Profile) -> Profile:
    """Facts read from the file; hashes and size come from `base` (the verified manifest)."""
    nulls = _null_counts(table)
    cols: dict[str, tuple[str, int | None]] = {f.name: (str(f.type), nulls[i]) for i, f in enumerate(table.schema)}
    # FlatGeobuf has no `geo` metadata: its geometry facts are the verified manifest's
    prof = Profile(sha256=base.sha256, size=base.size, rows=table.num_rows, columns=cols,
                   logical=base.logical, geometry_types=base.geometry_types, crs=base.crs, bbox=base.bbox)
    meta = (table.schema.metadata or {}).get(b"geo")
    if meta:
        geo = json.loads(meta)
        col = geo.get("columns", {}).get(geo.get("primary_column"), {})
        prof.geometry_types = sorted(col.get("geometry_types") or []) or None
        # GeoParquet: a missing `crs` key means OGC:CRS84; an explicit null means unknown
        prof.crs = _crs_name(col["crs"]) if "crs" in col else "OGC:CRS84"
        prof.bbox = [float(b) for b in col["bbox"]] if col.get("bbox") else None
    return prof


def _pair(old: Any, new: Any) -> dict[str, Any]:
    return {"old": old, "new": new, "same": old == new}


def compare_profiles(old: Profile, new: Profile) -> dict[str, Any]:
    """Hash, size, row, schema, null, geometry, CRS and bbox changes between two profiles."""
    oc, nc = old.columns, new.columns
    both = [c for c in nc if c in oc]
    logical_same = old.logical == new.logical if old.logical and new.logical else None
    return {
        "bytes": _pair(old.sha256, new.sha256),
        "logical": {"old": old.logical, "new": new.logical, "same": logical_same},
        "size": _pair(old.size, new.size),
        "rows": _pair(old.rows, new.rows),
        "columns": {
            "added": [c for c in nc if c not in oc],
            "removed": [c for c in oc if c not in nc],
            "retyped": [{"name": c, "old": oc[c][0], "new": nc[c][0]} for c in both if oc[c][0] != nc[c][0]],
        },
        "nulls": [
            {"name": c, "old": oc[c][1], "new": nc[c][1]}
            for c in both if oc[c][1] is not None and nc[c][1] is not None and oc[c][1] != nc[c][1]
        ],
        "geometry_types": _pair(old.geometry_types, new.geometry_types),
        "crs": _pair(old.crs, new.crs),
        "bbox": _pair(old.bbox, new.bbox),
        **format_facts(old, new),
    }


GRID_KEYS = ("width", "height", "bands", "dtypes", "nodata", "transform", "overviews")
ZOOM_KEYS = ("min_zoom", "max_zoom", "tile_count")


def format_facts(old: Profile, new: Profile) -> dict[str, Any]:
    """COG grid and PMTiles zoom/layer changes; empty for the tabular formats."""
    out: dict[str, Any] = {}
    if old.raster is not None or new.raster is not None:
        o, n = old.raster or {}, new.raster or {}
        out["raster"] = {k: _pair(o.get(k), n.get(k)) for k in GRID_KEYS}
    if old.tiles is not None or new.tiles is not None:
        o, n = old.tiles or {}, new.tiles or {}
        ol = [str(v["name"]) for v in o.get("layers") or []]
        nl = [str(v["name"]) for v in n.get("layers") or []]
        out["tiles"] = {k: _pair(o.get(k), n.get(k)) for k in ZOOM_KEYS}
        out["layers"] = {"added": [x for x in nl if x not in ol], "removed": [x for x in ol if x not in nl]}
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _show(value: Any) -> str:
    """A short, single-line rendering of one cell for the examples."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key_text(keys: list[str], row: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={_show(v)}" for k, v in zip(keys, row, strict=False))


def compare_rows(old: Rows, new: Rows, keys: list[str]) -> dict[str, Any]:
    """Row-level changes: by primary key when declared (and present on both sides), else
    as multisets of whole rows (rows only in the old / only in the new version).

    DuckDB scans Parquet files itself, row group by row group, and its join spills to a
    temporary folder past JOIN_MEMORY_LIMIT: the files can be bigger than memory."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="d4c-diff-spill-") as spill:
        con = duckdb.connect(config={"memory_limit": JOIN_MEMORY_LIMIT, "temp_directory": spill})
        try:
            _register(con, "o", old)
            _register(con, "n", new)
            return _compare_rows(con, old, new, keys)
        finally:
            con.close()


def _compare_rows(con: Any, old: Rows, new: Rows, keys: list[str]) -> dict[str, Any]:
    ocols = {f.name: f.type for f in old.schema}
    common = [f.name for f in new.schema if f.name in ocols and ocols[f.name] == f.type]
    if not keys or not all(k in common for k in keys):
        cols = ", ".join(_q(c) for c in common) or "1"
        only_old = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM o EXCEPT ALL SELECT {cols} FROM n)").fetchone()
        only_new = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM n EXCEPT ALL SELECT {cols} FROM o)").fetchone()
        why = "no primary key declared" if not keys else "primary key not comparable on both sides"
        return {"by": "rows", "note": why, "only_old": only_old[0] if only_old else 0,
                "only_new": only_new[0] if only_new else 0}

    kq = ", ".join(_q(k) for k in keys)
    values = [c for c in common if c not in keys]
    on = " AND ".join(f"o.{_q(k)} IS NOT DISTINCT FROM n.{_q(k)}" for k in keys)
    differs = [f"o.{_q(c)} IS DISTINCT FROM n.{_q(c)}" for c in values]
    flags = "".join(f", coalesce(o.{IN} AND n.{IN} AND {d}, FALSE) AS f{i}" for i, d in enumerate(differs))
    # One full outer join over both tables; only the rows that differ are kept (usually few),
    # so the counts and examples below read a small table instead of joining again.
    con.execute(
        f"CREATE TEMP TABLE d AS SELECT {', '.join(f'coalesce(n.{_q(k)}, o.{_q(k)}) AS {_q(k)}' for k in keys)}, "
        f"o.{IN} IS NULL AS added, n.{IN} IS NULL AS removed{flags} "
        f"FROM (SELECT *, TRUE AS {IN} FROM o) o FULL OUTER JOIN (SELECT *, TRUE AS {IN} FROM n) n ON {on} "
        f"WHERE o.{IN} IS NULL OR n.{IN} IS NULL OR {' OR '.join(differs) or 'FALSE'}")
    per_col = "".join(f", count(*) FILTER (WHERE f{i})" for i in range(len(values)))
    row = con.execute("SELECT count(*) FILTER (WHERE added), count(*) FILTER (WHERE removed), "
                      f"count(*) FILTER (WHERE NOT added AND NOT removed){per_col} FROM d").fetchone()
    added, removed, changed, *per = row or (0, 0, 0)
    changed_cols = {c: n for c, n in zip(values, per, strict=False) if n}

    def keys_where(cond: str) -> list[tuple[Any, ...]]:
        return con.execute(f"SELECT {kq} FROM d WHERE {cond} ORDER BY {kq} LIMIT {MAX_EXAMPLES}").fetchall()

    changed_ex: list[str] = []
    show = [c for c in values if c in changed_cols][:3]
    if changed and show:
        def on_k(t: str) -> str:
            return " AND ".join(f"k.{_q(k)} IS NOT DISTINCT FROM {t}.{_q(k)}" for k in keys)

        picked = ", ".join([*(f"k.{_q(k)}" for k in keys), *(f"o.{_q(c)}, n.{_q(c)}" for c in show)])
        top = f"SELECT DISTINCT {kq} FROM d WHERE NOT added AND NOT removed ORDER BY {kq} LIMIT {MAX_EXAMPLES}"
        for r in con.execute(f"SELECT {picked} FROM ({top}) k JOIN o ON {on_k('o')} JOIN n ON {on_k('n')} "
                             f"ORDER BY {', '.join(f'k.{_q(k)}' for k in keys)} LIMIT {MAX_EXAMPLES * 3}").fetchall():
            vals = r[len(keys):]
            parts = [f"{c}: {_show(vals[2 * i])} -> {_show(vals[2 * i + 1])}"
                     for i, c in enumerate(show) if vals[2 * i] != vals[2 * i + 1]]
            if parts:  # with duplicate keys, some joined pairs are equal
                changed_ex.append(f"{_key_text(keys, r[:len(keys)])} ({'; '.join(parts)})")
    # Unique keys on both sides match one-to-one; anything else means duplicates, counted exactly.
    repeated = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM d WHERE NOT added AND NOT removed "
                           f"GROUP BY {kq} HAVING count(*) > 1)").fetchone()
    dup = (0, 0)
    if old.num_rows - removed != new.num_rows - added or (repeated and repeated[0]):
        dup = con.execute(f"SELECT (SELECT count(*) - count(DISTINCT ({kq})) FROM o), "
                          f"(SELECT count(*) - count(DISTINCT ({kq})) FROM n)").fetchone() or (0, 0)
    examples = {"added": [_key_text(keys, r) for r in keys_where("added")],
                "removed": [_key_text(keys, r) for r in keys_where("removed")],
                "changed": changed_ex[:MAX_EXAMPLES]}
    return {
        "by": "key", "key": keys, "added": added, "removed": removed, "changed": changed,
        "changed_columns": dict(sorted(changed_cols.items(), key=lambda kv: (-kv[1], kv[0]))),
        "duplicate_keys": {"old": dup[0], "new": dup[1]},
        "examples": examples,
    }
