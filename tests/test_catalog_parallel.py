"""The parallel build (d4c.catalog.parallel) and the schema of only the asset fields in use
(d4c.catalog.writer): same bytes as one process, the serial build's error line, old,
wider catalogs still read and append, and the footer metadata is stac-geoparquet's."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from catalog_factory import make_record, write_records
from d4c.catalog import append_record, build_catalog, metadata_from, parallel
from d4c.catalog import writer as catalog_writer
from d4c.catalog.append import read_catalog
from d4c.catalog.writer import keys_of_schema, schema_from_keys, table_to_items
from d4c.errors import D4CError

META = metadata_from(None)


def _records(datasets: int) -> list[dict[str, Any]]:
    out = []
    for n in range(datasets):
        outputs = (("capitals", "geoparquet"),) if n % 3 else (("capitals", "geoparquet"), ("tbl", "csv"))
        targets = ("s3", "zenodo", "local")[: 1 + n % 3]
        out += [make_record(f"ca_p_d{n:03d}", v, outputs=outputs, targets=targets)
                for v in ("1.0.0", "1.1.0")]
    return out


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_workers_give_the_one_process_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pooled: list[int] = []
    real = parallel._pooled

    def counted(folders: list[str], count: int) -> list[parallel.Part]:
        pooled.append(count)
        return real(folders, count)

    monkeypatch.setattr(parallel, "_pooled", counted)
    records = _records(parallel.POOL_MIN + 4)
    releases = tmp_path / "releases"
    write_records(releases, records)
    one, two = tmp_path / "one.parquet", tmp_path / "two.parquet"
    parallel.build_from_releases(releases, one, metadata=META, workers=1,
                                 collections_dir=tmp_path / "tree1")
    count, colls = parallel.build_from_releases(releases, two, metadata=META, workers=2,
                                                collections_dir=tmp_path / "tree2")
    assert (count, len(colls)) == (len(records), parallel.POOL_MIN + 4)
    assert pooled == [2]  # the second build went through the workers, the first did not
    assert one.read_bytes() == two.read_bytes()
    side = one.with_name("one.collections.json").read_bytes()
    assert side == two.with_name("two.collections.json").read_bytes()
    assert _tree(tmp_path / "tree1") == _tree(tmp_path / "tree2")
    lib = tmp_path / "lib.parquet"
    build_catalog(records, lib, metadata=META)  # in memory, in this process
    assert lib.read_bytes() == one.read_bytes()


def test_a_bad_record_in_a_worker_is_the_serial_builds_line(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    write_records(releases, _records(parallel.POOL_MIN + 4))
    bad = releases / "ca_p_d017" / "1.1.0.json"
    record = json.loads(bad.read_text())
    del record["files"]
    bad.write_text(json.dumps(record))
    lines = []
    for workers in (1, 2):
        with pytest.raises(D4CError) as err:
            parallel.build_from_releases(releases, tmp_path / "c.parquet", metadata=META, workers=workers)
        lines.append(str(err.value))
    assert lines[0] == lines[1] and "lacks files" in lines[0]
    assert not (tmp_path / "c.parquet").exists()


def test_no_records_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "releases").mkdir()
    with pytest.raises(D4CError, match="no release records"):
        parallel.build_from_releases(tmp_path / "releases", tmp_path / "c.parquet", metadata=META)


def test_the_schema_holds_only_the_asset_fields_some_item_has(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    build_catalog(_records(3), path, metadata=META)
    assets = pq.ParquetFile(path).schema_arrow.field("assets").type
    capitals = assets.field("capitals").type
    alternates = capitals.field("alternate").type
    # `local` and `s3` are alternates of some capitals; the main href (`local` sorts first
    # among one record's targets in name order) is never an alternate of its own asset.
    assert sorted(alternates.field(i).name for i in range(alternates.num_fields)) == \
        ["s3", "torrent", "zenodo"]
    assert all(alternates.field(i).type.names == ["href"] for i in range(alternates.num_fields))
    assert capitals.names[-1] == "d4c:mirror" and "d4c:retain" not in capitals.names  # no retain: latest
    manifest = assets.field("manifest").type
    assert "torrent" not in manifest.field("alternate").type.names  # only data assets name one
    assert keys_of_schema(schema_from_keys(keys_of_schema(pq.read_schema(path)))) == \
        keys_of_schema(pq.read_schema(path))


def test_a_catalog_with_every_field_on_every_asset_reads_and_appends(tmp_path: Path) -> None:
    """Catalogs written before the narrow schema have every mirror and field on every asset
    key: they still read to the same items, and an append keeps their schema (a rebuild
    narrows it)."""
    records = _records(3)
    narrow = tmp_path / "narrow.parquet"
    build_catalog(records[:-1], narrow, metadata=META)
    table, colls = read_catalog(narrow)
    keys, paths, software = keys_of_schema(table.schema)
    mirrors = {m for kind, _, m in paths if kind == catalog_writer._ALT}
    wide_paths = {(kind, k, m) for k in keys for m in mirrors
                  for kind in (catalog_writer._ALT, catalog_writer._ALT_RETAIN)}
    wide_paths |= {(catalog_writer._FIELD, k, f) for k in keys for f in ("d4c:retain", "d4c:mirror")}
    wide_schema = schema_from_keys((keys, wide_paths, software))
    old = tmp_path / "old.parquet"
    catalog_writer.write_parquet(catalog_writer.conform(table, wide_schema), colls, old)
    assert pq.ParquetFile(old).metadata.num_columns > pq.ParquetFile(narrow).metadata.num_columns
    assert table_to_items(read_catalog(old)[0]) == table_to_items(table)
    append_record(records[-1], old, metadata=META)
    rebuilt = tmp_path / "rebuilt.parquet"
    build_catalog(records, rebuilt, metadata=META)
    assert pq.read_schema(old) == wide_schema
    assert table_to_items(read_catalog(old)[0]) == table_to_items(read_catalog(rebuilt)[0])


def test_the_footer_metadata_is_what_stac_geoparquet_writes(tmp_path: Path) -> None:
    from d4c.catalog import geo
    from stac_geoparquet.arrow import DEFAULT_PARQUET_SCHEMA_VERSION
    from stac_geoparquet.arrow._crs import WGS84_CRS_JSON
    from stac_geoparquet.arrow._to_parquet import STAC_GEOPARQUET_VERSION, create_parquet_metadata

    path = tmp_path / "c.parquet"
    build_catalog(_records(1), path, metadata=META)
    schema = pq.read_schema(path)
    want = create_parquet_metadata(schema, schema_version=DEFAULT_PARQUET_SCHEMA_VERSION)
    assert want == geo.footer_metadata()
    footer = pq.ParquetFile(path).metadata.metadata
    assert {k: footer[k] for k in want} == want
    assert (geo.WGS84_CRS_JSON, geo.STAC_GEOPARQUET_VERSION) == (WGS84_CRS_JSON, STAC_GEOPARQUET_VERSION)
