"""Crafted and corrupt catalogs fed to an append, and lying HTTP servers behind query and
site: one line, nothing half-written, and a splice never copies bytes that another row
group still reads (d4c.catalog.splice)."""
from __future__ import annotations

import contextlib
import copy
import re
import struct
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.config import Config
from catalog_factory import make_record
from d4c.catalog import append_record, build_catalog, metadata_from
from d4c.catalog import thrift_compact as tc
from d4c.catalog import writer as catalog_writer
from d4c.cli import main
from d4c.errors import D4CError
from moto.server import ThreadedMotoServer
from test_catalog_query import _RangeHandler

META = metadata_from(None)
# parquet.thrift: FileMetaData.row_groups, RowGroup.columns, ColumnChunk.meta_data,
# ColumnMetaData.data_page_offset / dictionary_page_offset / statistics
ROW_GROUPS, COLUMNS, META_DATA, DATA_PAGE, DICT_PAGE, STATISTICS = 4, 1, 3, 9, 11, 12
BUCKET = "hostile-catalog"  # not another test file's: moto's in-process state is shared


def _field(fields: list[Any], fid: int) -> list[Any]:
    return next(f for f in fields if f[0] == fid)


def _groups_of(footer: list[Any]) -> list[Any]:
    return list(_field(footer, ROW_GROUPS)[2][1])


def _crafted(path: Path, edit: Any) -> None:
    """Rewrite the file's footer through `edit(footer)`, the row groups' bytes kept."""
    data = path.read_bytes()
    start = len(data) - 8 - struct.unpack("<I", data[-8:-4])[0]
    footer = tc.Reader(data[start:-8]).struct()
    edit(footer)
    out = bytearray()
    tc.encode_struct(footer, out)
    path.write_bytes(data[:start] + bytes(out) + struct.pack("<I", len(out)) + b"PAR1")


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three row groups of three rows: [a b c] [d d e] [f f g]."""
    monkeypatch.setattr(catalog_writer, "ROW_GROUP_SIZE", 4)
    sizes = {"ca_a": 1, "ca_b": 1, "ca_c": 1, "ca_d": 2, "ca_e": 1, "ca_f": 2, "ca_g": 1}
    path = tmp_path / "catalog.parquet"
    build_catalog([make_record(c, f"1.{v}.0") for c, n in sizes.items() for v in range(n)], path, metadata=META)
    assert [pq.ParquetFile(path).metadata.row_group(g).num_rows for g in range(3)] == [3, 3, 3]
    return path


def test_a_column_chunk_read_by_another_row_group_is_not_spliced_away(catalog: Path) -> None:
    """Group 0's `title` chunk points at group 1's (pyarrow reads it): an append to ca_e
    writes group 1 again, so copying group 0's metadata as it is would point it into new
    bytes. The append rewrites the file, and every row still reads as it did."""
    pf = pq.ParquetFile(catalog)
    col = next(i for i in range(pf.metadata.num_columns) if pf.metadata.schema.column(i).path == "title")

    def borrow(footer: list[Any]) -> None:
        g0, g1 = _groups_of(footer)[:2]
        _field(g0, COLUMNS)[2][1][col] = copy.deepcopy(_field(g1, COLUMNS)[2][1][col])

    _crafted(catalog, borrow)
    before = pq.read_table(catalog, columns=["id", "title"]).to_pylist()
    assert before[0]["title"] == "Dataset ca_d"  # group 0 reads group 1's titles
    append_record(make_record("ca_e", "1.1.0"), catalog, metadata=META)
    after = pq.read_table(catalog, columns=["id", "title"]).to_pylist()
    assert [r for r in after if r["id"] != "ca_e_v1-1-0"] == before


def test_a_row_group_that_does_not_read_is_one_line_and_nothing_is_written(catalog: Path) -> None:
    """The last group's data points past the end: the append stops with one line, and neither
    the catalog nor its side file changes (the splice would have copied it as it is)."""
    def beyond(footer: list[Any]) -> None:
        meta = _field(_field(_groups_of(footer)[2], COLUMNS)[2][1][-1], META_DATA)[2]
        for f in meta:
            if f[0] in (DATA_PAGE, DICT_PAGE):
                f[2] = 10**9

    _crafted(catalog, beyond)
    side = catalog.with_name("catalog.collections.json")
    want = catalog.read_bytes(), side.read_bytes()
    with pytest.raises(D4CError, match="catalog.parquet: the catalog does not read: ") as exc:
        append_record(make_record("ca_a", "1.1.0"), catalog, metadata=META)
    assert "regenerate it from releases/ with `d4c catalog build`" in exc.value.line()
    assert (catalog.read_bytes(), side.read_bytes()) == want
    assert sorted(p.name for p in catalog.parent.iterdir()) == ["catalog.collections.json", "catalog.parquet",
                                                                "catalog.parquet.lock"]


_BOX = {"xmin": 1.0, "ymin": 1.0, "xmax": 2.0, "ymax": 2.0}


@pytest.mark.parametrize("table,column", [
    (pa.table({"x": [1]}), "collection"), (pa.table({"collection": [1], "bbox": [1.0]}), "collection"),
    (pa.table({"collection": pa.array([b"ca_a"], pa.binary())}), "collection"),
    (pa.table({"collection": pa.array([], pa.string())}), "id"),
    (pa.table({"collection": ["ca_a"], "id": ["a"], "bbox": [{"a": 1.0}]}), "bbox"),
    (pa.table({"collection": ["ca_a"], "id": ["a"], "bbox": [_BOX], "version": ["1.0.0"]}), "assets"),
], ids=["other", "int", "binary", "no-id", "odd-bbox", "no-assets"])
def test_parquet_that_is_not_a_catalog_is_one_line(tmp_path: Path, table: pa.Table, column: str) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(table, path)
    with pytest.raises(D4CError, match=f"other.parquet is not a catalog file: its `{column}` column is missing"):
        append_record(make_record("ca_a", "1.0.0"), path, metadata=META)


def test_validate_of_a_corrupt_catalog_is_one_line(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def beyond(footer: list[Any]) -> None:
        _field(_field(_field(_groups_of(footer)[1], COLUMNS)[2][1][0], META_DATA)[2], DATA_PAGE)[2] = 10**9
        for f in _field(_field(_groups_of(footer)[1], COLUMNS)[2][1][0], META_DATA)[2]:
            if f[0] == DICT_PAGE:
                f[2] = 10**9

    _crafted(catalog, beyond)
    assert main(["catalog", "validate", "--catalog", str(catalog)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the catalog does not read" in err[0] and "unexpected" not in err[0], err


@pytest.fixture
def s3() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):  # moto's state outlives its server
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)
    server.stop()


def test_a_corrupt_catalog_on_s3_is_one_line_and_left_as_it_was(catalog: Path, s3: Any) -> None:
    def beyond(footer: list[Any]) -> None:
        for f in _field(_field(_groups_of(footer)[0], COLUMNS)[2][1][-1], META_DATA)[2]:
            if f[0] in (DATA_PAGE, DICT_PAGE):
                f[2] = 10**9

    _crafted(catalog, beyond)
    s3.put_object(Bucket=BUCKET, Key="c.parquet", Body=catalog.read_bytes())
    with pytest.raises(D4CError, match=f"s3://{BUCKET}/c.parquet: the catalog does not read"):
        append_record(make_record("ca_a", "1.1.0"), f"s3://{BUCKET}/c.parquet", metadata=META, s3_client=s3)
    assert s3.get_object(Bucket=BUCKET, Key="c.parquet")["Body"].read() == catalog.read_bytes()
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1


class _Lying(_RangeHandler):
    """A Range server that lies: `size` more bytes in HEAD than it holds, `junk` zeroes for
    every range, or `extra` bytes past every range asked."""

    size = junk = extra = 0

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body) + self.size))
        self.end_headers()

    def do_GET(self) -> None:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        assert m, "the catalog is read by ranges only"
        data = self.body[int(m[1]):int(m[2]) + 1]
        data = bytes(len(data)) if self.junk else data + b"x" * self.extra
        self.send_response(206)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client stops reading past its range
            self.wfile.write(data)


@pytest.mark.parametrize("lie,said", [
    ({"size": 1000}, r"answered (\d+) bytes to a Range request for (?!\1)\d+ \(hint: its size"),
    ({"size": -10**9}, "is not a catalog file: Parquet file size is 0 bytes"),
    ({"junk": 1}, "is not a catalog file: Parquet magic bytes not found"),
    ({"extra": 64 << 20}, r"answered more bytes to a Range request for \d+ "),
])
def test_a_lying_http_server_is_one_line_for_query_and_site(catalog: Path, tmp_path: Path, lie: dict[str, int],
                                                            said: str, capsys: pytest.CaptureFixture[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Lying,), {"body": catalog.read_bytes(), **lie}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/catalog.parquet"
    try:
        for argv in (["catalog", "query", "--catalog", url, "--dataset", "ca_a"],
                     ["catalog", "site", "--catalog", url, "--out", str(tmp_path / "site")]):
            assert main(argv) == 1
            err = capsys.readouterr().err.strip()
            assert re.search(said, err) and len(err.splitlines()) == 1 and "unexpected" not in err, (argv, err)
    finally:
        server.shutdown()
        server.server_close()
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("body,said", [(b"garbage", "too small to be a Parquet file"),
                                       (None, 'column "collection" not found')])
def test_a_local_file_that_is_not_a_catalog_is_one_line_for_query(tmp_path: Path, body: bytes | None, said: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.parquet"
    if body is None:
        pq.write_table(pa.table({"x": [1]}), path)
    else:
        path.write_bytes(body)
    assert main(["catalog", "query", "--catalog", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{path} is not a catalog file" in err and said in err and len(err.splitlines()) == 1, err


def test_an_s3_endpoint_that_goes_away_is_one_line() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    server.stop()
    with pytest.raises(D4CError, match=rf"cannot append to s3://{BUCKET}/c.parquet: Could not connect to the endpoint"):
        append_record(make_record("ca_a", "1.1.0"), f"s3://{BUCKET}/c.parquet", metadata=META, s3_client=client)


def test_statistics_that_hide_a_datasets_rows_lose_no_version(catalog: Path) -> None:
    """Group 1 holds ca_d's two versions but its `collection` statistics say ca_c: an append
    to ca_d would re-link none of them and drop both. It stops in one line instead."""
    pf = pq.ParquetFile(catalog)
    col = next(i for i in range(pf.metadata.num_columns) if pf.metadata.schema.column(i).path == "collection")

    def lie(footer: list[Any]) -> None:
        stats = _field(_field(_field(_groups_of(footer)[1], COLUMNS)[2][1][col], META_DATA)[2], STATISTICS)[2]
        for f in stats:
            if f[0] in (1, 2, 5, 6):  # max, min, max_value, min_value
                f[2] = b"ca_c"

    _crafted(catalog, lie)
    want = catalog.read_bytes()
    with pytest.raises(D4CError, match="the catalog's row group statistics hide rows of ca_d: 2 in the file, 0 "):
        append_record(make_record("ca_d", "1.2.0"), catalog, metadata=META)
    assert catalog.read_bytes() == want


def test_a_side_file_path_that_is_a_folder_is_one_line_naming_it(catalog: Path) -> None:
    side = catalog.with_name("catalog.collections.json")
    side.unlink()
    side.mkdir()
    want = catalog.read_bytes()
    with pytest.raises(D4CError, match=r"catalog.parquet: cannot update the catalog: \[Errno 21\] Is a directory: "
                                       r".*catalog.collections.json"):
        append_record(make_record("ca_a", "1.1.0"), catalog, metadata=META)
    assert catalog.read_bytes() == want and side.is_dir()


def test_an_empty_row_group_after_the_span_is_no_splice(tmp_path: Path) -> None:
    """A crafted file whose group after the span has no rows: the splice declines (the whole
    file is rewritten) instead of an IndexError from reading that group's first dataset."""
    from d4c.catalog import splice

    table = pa.table({"collection": ["ca_a", "ca_a"]})
    path = tmp_path / "two.parquet"
    with pq.ParquetWriter(path, table.schema) as out:
        out.write_table(table)
        out.write_table(table.slice(0, 0))
    pf = pq.ParquetFile(path)
    assert [pf.metadata.row_group(g).num_rows for g in range(2)] == [2, 0]
    assert splice.splice(path, pf, (0, 0), [table], table.schema, {}, tmp_path / "new.parquet") is False
    assert not (tmp_path / "new.parquet").exists()
