"""Items <-> Arrow with an explicit schema, and the deterministic GeoParquet write.

The schema is computed from the items' key sets only (asset keys, mirror names,
software names; each sorted), never inferred per batch, so datasets with different
assets or missing optional fields share one schema and the same items always give
the same bytes. Layout follows stac-geoparquet 1.0: properties at the top level,
`bbox` as a struct (a GeoParquet 1.1 covering), `geometry` as WKB.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from stac_geoparquet.arrow import DEFAULT_PARQUET_SCHEMA_VERSION, stac_table_to_items
from stac_geoparquet.arrow._crs import WGS84_CRS_JSON  # the CRS stac-geoparquet itself tags
from stac_geoparquet.arrow._to_parquet import create_parquet_metadata

from d4c.atomic import atomic_path
from d4c.catalog.assets import RETAIN
from d4c.catalog.items import Item
from d4c.errors import D4CError

ROW_GROUP_SIZE = 2048  # ~50 row groups for 100k versions: min/max on `collection` prunes
# Min/max statistics only where a query can prune on them: statistics of every nested
# asset field (long URLs, citations) would make the footer, read by every query, the
# bulk of the file.
STATISTICS = ["collection", "id", "version", "deprecated", "datetime", "start_datetime",
              "end_datetime", "created", "bbox.xmin", "bbox.ymin", "bbox.xmax", "bbox.ymax"]
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd", "compression_level": 6, "version": "2.6",
    "data_page_version": "1.0", "write_statistics": STATISTICS, "use_dictionary": True,
    "write_page_index": False,
    # ARROW:schema would repeat the footer metadata (all collections) base64-encoded; the
    # Parquet types plus the `geo` metadata already carry everything readers need.
    "store_schema": False,
}
Keys = tuple[set[str], set[str], set[str]]
TS = pa.timestamp("us", tz="UTC")
_STR_LIST = pa.list_(pa.string())
LINK = pa.struct([("rel", pa.string()), ("href", pa.string()),
                  ("type", pa.string()), ("title", pa.string())])
# One alternate copy (alternate-assets): its href, and d4c:retain for a copy on a
# `retain: latest` target (d4c.catalog.assets). Every field is one Parquet column per
# asset and mirror, and the footer, which every query reads, describes each column.
ALTERNATE = pa.struct([("href", pa.string()), (RETAIN, pa.string())])
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
]


def keys_of_items(items: Iterable[Item]) -> Keys:
    """The variable key sets of some items: asset keys, mirror names, software names."""
    asset_keys: set[str] = set()
    mirrors: set[str] = set()
    software: set[str] = set()
    for item in items:
        for key, asset in item["assets"].items():
            asset_keys.add(key)
            mirrors.update(asset.get("alternate") or ())
        software.update(item["properties"].get("processing:software") or ())
    return asset_keys, mirrors, software


def keys_of_schema(schema: pa.Schema) -> Keys:
    """The key sets a schema written by `schema_from_keys` was made from."""
    assets = schema.field("assets").type
    asset_keys = {assets.field(i).name for i in range(assets.num_fields)}
    mirrors: set[str] = set()
    if asset_keys:
        first = assets.field(0).type
        if first.get_field_index("alternate") >= 0:
            alt = first.field("alternate").type
            mirrors = {alt.field(i).name for i in range(alt.num_fields)}
    software: set[str] = set()
    if "processing:software" in schema.names:
        sw = schema.field("processing:software").type
        software = {sw.field(i).name for i in range(sw.num_fields)}
    return asset_keys, mirrors, software


def schema_from_keys(keys: Keys) -> pa.Schema:
    """The explicit schema: fixed columns plus the sorted variable key sets."""
    asset_keys, mirrors, software = keys
    asset_fields = [("href", pa.string()), ("type", pa.string()), ("title", pa.string()),
                    ("roles", _STR_LIST), ("file:size", pa.int64()),
                    ("file:checksum", pa.string())]
    if mirrors:  # Parquet cannot store an empty struct: no mirrors, no column
        asset_fields.append(("alternate", pa.struct([(m, ALTERNATE) for m in sorted(mirrors)])))
    asset_fields.append((RETAIN, pa.string()))
    asset = pa.struct(asset_fields)
    geometry = pa.field("geometry", pa.binary(), metadata={
        b"ARROW:extension:name": b"geoarrow.wkb",
        b"ARROW:extension:metadata": b'{"crs": ' + _crs_json() + b"}",
    })
    fields = [
        pa.field("type", pa.string()), pa.field("stac_version", pa.string()),
        pa.field("stac_extensions", _STR_LIST), pa.field("id", pa.string()), geometry,
        pa.field("bbox", pa.struct([(n, pa.float64()) for n in ("xmin", "ymin", "xmax", "ymax")])),
        pa.field("links", pa.list_(LINK)),
        pa.field("assets", pa.struct([(k, asset) for k in sorted(asset_keys)])),
        pa.field("collection", pa.string()),
        *(pa.field(name, typ) for name, typ in PROPERTIES),
    ]
    if software:
        fields.append(pa.field("processing:software",
                               pa.struct([(s, pa.string()) for s in sorted(software)])))
    return pa.schema(fields)


def _crs_json() -> bytes:
    import json

    return json.dumps(WGS84_CRS_JSON, sort_keys=True, separators=(",", ":")).encode()


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
    """Cast to a widened schema; a column the table lacks comes in as nulls."""
    names = set(table.column_names)
    return pa.Table.from_arrays(
        [table[f.name].cast(f.type) if f.name in names else pa.nulls(len(table), f.type)
         for f in schema], schema=schema)


def concat_parts(parts: list[pa.Table]) -> pa.Table:
    """Per-dataset tables (each with its own key sets) -> one table, canonical schema."""
    keys: Keys = (set(), set(), set())
    for part in parts:
        for acc, more in zip(keys, keys_of_schema(part.schema)):
            acc |= more
    schema = schema_from_keys(keys)
    merged = pa.concat_tables(parts, promote_options="permissive")  # unions struct fields
    return conform(merged.select([n for n in schema.names if n in merged.column_names]), schema)


def write_parquet(table: pa.Table, collections: Mapping[str, Any], dest: Path) -> None:
    """Write atomically (temp file + rename): readers never see a half-written catalog.

    Our own writer loop rather than `stac_geoparquet.arrow.to_parquet`, which cannot add
    footer metadata without ARROW:schema; the metadata itself is stac-geoparquet's.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    meta = create_parquet_metadata(table.schema, schema_version=DEFAULT_PARQUET_SCHEMA_VERSION,
                                   collections=dict(collections))
    with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, table.schema, **PARQUET_OPTIONS) as writer:
        # Row groups of exactly ROW_GROUP_SIZE rows, however the table is chunked.
        writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
        writer.add_key_value_metadata(meta)


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
    out = []
    for raw in stac_table_to_items(table):
        item = _strip_nulls(raw)
        item["properties"].setdefault("datetime", None)
        verified = item["properties"].get("d4c:last_verified")
        if hasattr(verified, "strftime"):  # a timestamp stac-geoparquet does not know of
            item["properties"]["d4c:last_verified"] = verified.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append(item)
    return out
