"""Items <-> Arrow with an explicit schema, and the deterministic GeoParquet write.

The schema is computed from the items' key sets only (asset keys, mirror names,
software names; each sorted), never inferred per batch, so datasets with different
assets or missing optional fields share one schema and the same items always give
the same bytes. Layout follows stac-geoparquet 1.0: properties at the top level,
`bbox` as a struct (a GeoParquet 1.1 covering), `geometry` as WKB.
"""
from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from d4c.atomic import atomic_path, atomic_write
from d4c.catalog import geo, sidecar
from d4c.catalog.assets import MIRROR, RETAIN
from d4c.catalog.items import Item
from d4c.errors import D4CError

# Row groups hold whole datasets (a point query reads one), up to this many rows; a
# dataset with more versions gets groups of its own. The footer, which every query reads,
# grows with row groups x leaf columns: larger groups keep it small at a million versions.
ROW_GROUP_SIZE = 16384
# Min/max statistics only where a query can prune on them: on the sort key, the version
# and the time and space extents. Statistics of every nested asset field (long URLs,
# citations) would make the footer the bulk of the file. No bloom filter or page index on
# `collection`: the rows are sorted by it and groups hold whole datasets, so the groups'
# min/max already name the one group a dataset is in.
STATISTICS = ["collection", "version", "datetime", "start_datetime", "end_datetime",
              "bbox.xmin", "bbox.ymin", "bbox.xmax", "bbox.ymax"]
PARQUET_OPTIONS: dict[str, Any] = {
    # zstd 3 over 6: on the bench's catalog 5% larger and a third less encoding time,
    # which every build pays, and an append that rewrites the file (d4c.catalog.append).
    "compression": "zstd", "compression_level": 3, "version": "2.6",
    "data_page_version": "1.0", "write_statistics": STATISTICS,
    # No dictionary pages: most strings (hrefs, checksums, ids) are unique, and zstd takes
    # the repeated ones as well. On the bench's catalog: 7% smaller, the footer 9% smaller
    # (no dictionary offsets and encodings per column chunk), 16% less encoding time.
    "use_dictionary": False,
    "write_page_index": False,
    # ARROW:schema would repeat the footer metadata base64-encoded; the Parquet types plus
    # the `geo` metadata already carry everything readers need.
    "store_schema": False,
}
# An optional asset field a schema holds: (_FIELD, asset key, field name), (_ALT, asset key,
# mirror) for an alternate, (_ALT_RETAIN, asset key, mirror) for its d4c:retain.
AssetPath = tuple[str, str, str]
_FIELD, _ALT, _ALT_RETAIN = "field", "alternate", "alternate-retain"
Keys = tuple[set[str], set[AssetPath], set[str]]
TS = pa.timestamp("us", tz="UTC")
_STR_LIST = pa.list_(pa.string())
LINK = pa.struct([("rel", pa.string()), ("href", pa.string()),
                  ("type", pa.string()), ("title", pa.string())])
# The fields every asset has (d4c.catalog.assets), then those only some have: d4c:retain
# (a main copy on a `retain: latest` target) and d4c:mirror. An alternate copy
# (alternate-assets) has its href, and d4c:retain on a `retain: latest` target. Every
# field is one Parquet column per asset key (and mirror), which the footer, read by every
# query, describes once per row group: the schema holds only the fields some item uses.
_ASSET_BASE: list[tuple[str, pa.DataType]] = [
    ("href", pa.string()), ("type", pa.string()), ("title", pa.string()),
    ("roles", _STR_LIST), ("file:size", pa.int64()), ("file:checksum", pa.string())]
_OPTIONAL = (RETAIN, MIRROR)
PROVIDER = pa.struct([("name", pa.string()), ("roles", _STR_LIST), ("url", pa.string())])
_BBOX = ("xmin", "ymin", "xmax", "ymax")
_TOP_LEVEL = {"type", "stac_version", "stac_extensions", "id", "links", "assets", "collection"}
TIME_COLUMNS = ("datetime", "start_datetime", "end_datetime", "created")
# Properties in column order; processing:software is added when any item has software.
PROPERTIES: list[tuple[str, pa.DataType]] = [
    *((name, TS) for name in TIME_COLUMNS),
    ("title", pa.string()), ("description", pa.string()),
    ("d4c:title_fr", pa.string()), ("d4c:description_fr", pa.string()),
    ("license", pa.string()), ("keywords", _STR_LIST), ("providers", pa.list_(PROVIDER)),
    ("version", pa.string()), ("deprecated", pa.bool_()),
    ("sci:doi", pa.string()), ("sci:citation", pa.string()), ("d4c:concept_doi", pa.string()),
    # mirror health (d4c.catalog.health, docs/mirrors.md): null until a health file is applied
    ("d4c:copies_ok", pa.int32()), ("d4c:last_verified", TS), ("d4c:at_risk", pa.bool_()),
    # a recorded keep-until or takedown date (the recipe's retention, via the record)
    ("d4c:retention_until", pa.string()), ("d4c:retention_reason", pa.string()),
]


def keys_of_items(items: Iterable[Item]) -> Keys:
    """The variable key sets of some items: asset keys, the optional asset fields they
    carry (`asset_paths`), software names."""
    asset_keys: set[str] = set()
    paths: set[AssetPath] = set()
    software: set[str] = set()
    for item in items:
        for key, asset in item["assets"].items():
            asset_keys.add(key)
            for f in _OPTIONAL:
                if f in asset:
                    paths.add((_FIELD, key, f))
            alternate = asset.get("alternate")
            if alternate:
                for mirror, alt in alternate.items():
                    paths.add((_ALT, key, mirror))
                    if RETAIN in alt:
                        paths.add((_ALT_RETAIN, key, mirror))
        software.update(item["properties"].get("processing:software") or ())
    return asset_keys, paths, software


def keys_of_schema(schema: pa.Schema) -> Keys:
    """The key sets a schema written by `schema_from_keys` was made from (or an older
    catalog's, whose every asset had every mirror and field: it stays as wide)."""
    assets = schema.field("assets").type
    asset_keys: set[str] = set()
    paths: set[AssetPath] = set()
    for i in range(assets.num_fields):
        key, asset = assets.field(i).name, assets.field(i).type
        asset_keys.add(key)
        paths.update((_FIELD, key, f) for f in _OPTIONAL if asset.get_field_index(f) >= 0)
        if asset.get_field_index("alternate") >= 0:
            alt = asset.field("alternate").type
            for j in range(alt.num_fields):
                paths.add((_ALT, key, alt.field(j).name))
                if alt.field(j).type.get_field_index(RETAIN) >= 0:
                    paths.add((_ALT_RETAIN, key, alt.field(j).name))
    software: set[str] = set()
    if "processing:software" in schema.names:
        sw = schema.field("processing:software").type
        software = {sw.field(i).name for i in range(sw.num_fields)}
    return asset_keys, paths, software


def _asset_type(mine: set[tuple[str, str]]) -> pa.StructType:
    """One asset key's struct, from its (kind, name) optional paths: the fields every
    asset has, plus only the optional fields and alternates that some item's asset under
    this key carries. An all-null leaf still costs a column chunk in every row group."""
    fields = list(_ASSET_BASE)
    mirrors = sorted(m for kind, m in mine if kind == _ALT)
    if mirrors:  # Parquet cannot store an empty struct: no alternates, no column
        fields.append(("alternate", pa.struct([
            (m, pa.struct([("href", pa.string())]
                          + ([(RETAIN, pa.string())] if (_ALT_RETAIN, m) in mine else [])))
            for m in mirrors])))
    fields += [(f, pa.string()) for f in _OPTIONAL if (_FIELD, f) in mine]
    return pa.struct(fields)


def schema_from_keys(keys: Keys) -> pa.Schema:
    """The explicit schema: fixed columns plus the sorted variable key sets."""
    asset_keys, paths, software = keys
    by_key: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for kind, key, name in paths:
        by_key[key].add((kind, name))
    geometry = pa.field("geometry", pa.binary(), metadata={
        b"ARROW:extension:name": b"geoarrow.wkb",
        b"ARROW:extension:metadata": b'{"crs": ' + _crs_json() + b"}",
    })
    fields = [
        pa.field("type", pa.string()), pa.field("stac_version", pa.string()),
        pa.field("stac_extensions", _STR_LIST), pa.field("id", pa.string()), geometry,
        pa.field("bbox", pa.struct([(n, pa.float64()) for n in ("xmin", "ymin", "xmax", "ymax")])),
        pa.field("links", pa.list_(LINK)),
        pa.field("assets", pa.struct([(k, _asset_type(by_key[k])) for k in sorted(asset_keys)])),
        pa.field("collection", pa.string()),
        *(pa.field(name, typ) for name, typ in PROPERTIES),
    ]
    if software:
        fields.append(pa.field("processing:software",
                               pa.struct([(s, pa.string()) for s in sorted(software)])))
    return pa.schema(fields)


def _crs_json() -> bytes:
    import json

    return json.dumps(geo.WGS84_CRS_JSON, sort_keys=True, separators=(",", ":")).encode()


def _wkb_box(bbox: list[float]) -> bytes:
    """ISO WKB of the bbox polygon: built directly, no geometry library on the hot path."""
    x0, y0, x1, y1 = bbox
    return struct.pack("<BIII10d", 1, 3, 1, 5, x0, y0, x1, y0, x1, y1, x0, y1, x0, y0)


def items_to_table(items: list[Item]) -> pa.Table:
    """Items (already in catalog order) -> an Arrow table with the explicit schema.

    Column by column: one conversion per column is cheaper than matching every row's
    keys against the whole schema.
    """
    schema = schema_from_keys(keys_of_items(items))
    props = [i["properties"] for i in items]
    unknown = set().union(*props) - set(schema.names)
    if unknown:
        raise D4CError(f"no catalog column for the properties {sorted(unknown)}")
    columns = []
    for field in schema:
        name = field.name
        if name == "geometry":
            values: list[Any] = [_wkb_box(i["bbox"]) for i in items]
        elif name == "bbox":
            values = [dict(zip(_BBOX, i["bbox"])) for i in items]
        elif name in _TOP_LEVEL:
            values = [i.get(name, "Feature") for i in items]
        else:
            values = [p.get(name) for p in props]
        if name in TIME_COLUMNS or name == "d4c:last_verified":  # strings cast once per column: cheaper than per-row parsing
            columns.append(pa.array(values, pa.string()).cast(field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast to the file's schema: a column the table lacks comes in as nulls, and one the
    schema lacks (all null: d4c.catalog.narrow) goes."""
    names = set(table.column_names)
    return pa.Table.from_arrays(
        [table[f.name].cast(f.type) if f.name in names else pa.nulls(len(table), f.type)
         for f in schema], schema=schema)


def union_keys(a: Keys, b: Keys) -> Keys:
    return a[0] | b[0], a[1] | b[1], a[2] | b[2]


def widen(schema: pa.Schema, more: Keys) -> pa.Schema:
    """The schema for the union of a schema's key sets and some more."""
    return schema_from_keys(union_keys(keys_of_schema(schema), more))


def _dataset_ends(table: pa.Table) -> list[int]:
    """Where each dataset of a table sorted by collection ends (row numbers)."""
    if table.num_rows == 0:
        return []
    ends: list[int] = pc.run_end_encode(table["collection"].combine_chunks()).run_ends.to_pylist()
    return ends


def dataset_slices(table: pa.Table) -> Iterator[pa.Table]:
    """A table sorted by collection -> one zero-copy slice per dataset."""
    start = 0
    for end in _dataset_ends(table):
        yield table.slice(start, end - start)
        start = end


class CatalogWriter:
    """Streams datasets' rows (catalog order, the file's schema) into row groups of
    whole datasets: groups are cut only between datasets, at ROW_GROUP_SIZE rows, so
    the layout depends on the datasets' sizes alone, however the rows arrive."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self._writer = writer
        self._pending: list[pa.Table] = []
        self._open: tuple[pa.Table, int, int] | None = None  # (table, start, end): still growing
        self._rows = 0
        self.collections: dict[str, Any] = {}  # for the side file; set before closing

    def add(self, rows: pa.Table) -> None:
        """One dataset's rows (or the next rows of one cut across groups)."""
        self._add(rows, 0, rows.num_rows)

    def add_datasets(self, table: pa.Table) -> None:
        """Every dataset of a table sorted by collection, as `add` of each one's rows, but
        the datasets that go to one group stay one slice of `table`: concatenating a
        hundred one-dataset slices of 338 leaf columns cost half as much as encoding them."""
        start = 0
        for end in _dataset_ends(table):
            self._add(table, start, end)
            start = end

    def _add(self, table: pa.Table, start: int, end: int) -> None:
        if self._rows and self._rows + end - start > ROW_GROUP_SIZE:
            self.flush()
        if self._open is not None and self._open[0] is table and self._open[2] == start:
            self._open = (table, self._open[1], end)
        else:
            self._close()
            self._open = (table, start, end)
        self._rows += end - start
        if self._rows >= ROW_GROUP_SIZE:
            self.flush()

    def _close(self) -> None:
        if self._open is not None:
            table, start, end = self._open
            self._pending.append(table.slice(start, end - start))
            self._open = None

    def cuts_before(self, rows: int) -> bool:
        """Whether the next dataset, of `rows` rows, would start a new row group."""
        return not self._rows or self._rows + rows > ROW_GROUP_SIZE

    def flush(self) -> None:
        self._close()
        if not self._pending:
            return
        # Contiguous arrays: the pages then do not depend on how the input was chunked.
        group = pa.concat_tables(self._pending).combine_chunks()
        self._pending, self._rows = [], 0
        for start in range(0, group.num_rows, ROW_GROUP_SIZE):  # a giant dataset: several
            self._writer.write_table(group.slice(start, ROW_GROUP_SIZE),
                                     row_group_size=ROW_GROUP_SIZE)


@contextmanager
def rows_writer(path: Path, schema: pa.Schema, side: Path) -> Iterator[CatalogWriter]:
    """Row groups into `path` (not atomic: the caller's temp file). The caller sets
    `.collections` before leaving the block; they go to the side file `side`
    (d4c.catalog.sidecar), written first, and the footer names its sha256.

    Our own writer rather than `stac_geoparquet.arrow.to_parquet`, which cannot add footer
    metadata without ARROW:schema; the metadata itself is stac-geoparquet's (d4c.catalog.geo).
    """
    with pq.ParquetWriter(path, schema, **PARQUET_OPTIONS) as pw:
        out = CatalogWriter(pw)
        yield out
        out.flush()
        data, ref = sidecar.encode(out.collections)
        atomic_write(side, data=data)
        pw.add_key_value_metadata({**geo.footer_metadata(), sidecar.KEY: ref})


@contextmanager
def catalog_writer(dest: Path, schema: pa.Schema) -> Iterator[CatalogWriter]:
    """Write a catalog atomically (temp file + rename): readers never see half of one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp, rows_writer(tmp, schema, sidecar.beside(dest)) as out:
        yield out


def write_parquet(table: pa.Table, collections: Mapping[str, Any], dest: Path) -> None:
    """A whole table (sorted by collection) -> the catalog file: the layout a streamed
    build of the same items writes, byte for byte."""
    with catalog_writer(dest, table.schema) as out:
        out.add_datasets(table)
        out.collections = dict(collections)


def _strip_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_nulls(v) for v in value]
    return value


def table_to_items(table: pa.Table) -> list[Item]:
    """Arrow rows -> items, through stac-geoparquet's own reader.

    Parquet cannot tell an absent key from a null one, so nulls are dropped (the
    documented drawback); `datetime` is the exception, as STAC requires it, null or not.
    """
    from stac_geoparquet.arrow import stac_table_to_items  # 0.7 s: only readers pay it

    out = []
    for raw in stac_table_to_items(table):
        item = _strip_nulls(raw)
        item["properties"].setdefault("datetime", None)
        verified = item["properties"].get("d4c:last_verified")
        if hasattr(verified, "strftime"):  # a timestamp stac-geoparquet does not know of
            item["properties"]["d4c:last_verified"] = verified.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append(item)
    return out
