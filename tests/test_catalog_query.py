"""`d4c catalog query`: filters, --latest, formats; remote catalogs read by Range over a real
HTTP server and a real S3 server (moto), reading only the row groups a point query needs."""
from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from catalog_factory import five_records, make_record
from d4c.catalog import build_catalog, metadata_from
from d4c.catalog import writer as catalog_writer
from d4c.catalog.query import COLUMNS, RangeFile, open_remote, query, read_remote
from d4c.cli import main
from d4c.errors import D4CError
from moto.server import ThreadedMotoServer

META = metadata_from(None)
PROV = "ca_d4c_provinces-territories"


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    out = tmp_path / "catalog.parquet"
    build_catalog(five_records(), out, metadata=META)
    return out


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["catalog", "query", *argv, "--format", "json"]) == 0
    return list(json.loads(capsys.readouterr().out))


def test_latest_gives_one_row_per_dataset(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, "--catalog", str(catalog), "--latest")
    assert [r["collection"] for r in rows] == sorted({r["collection"] for r in rows})
    assert len(rows) == 4
    assert {r["version"] for r in rows if r["collection"] == PROV} == {"1.1.0"}
    assert not any(r["deprecated"] for r in rows)


def test_older_version_deprecated_and_links_to_latest(catalog: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, "--catalog", str(catalog), "--dataset", PROV)
    assert [(r["version"], r["deprecated"]) for r in rows] == [("1.0.0", True), ("1.1.0", False)]
    sql = (f"SELECT l.href FROM (SELECT unnest(links) AS l FROM catalog WHERE id = '{PROV}_v1-0-0') "
           "WHERE l.rel = 'latest-version'")
    assert _json(capsys, "--catalog", str(catalog), "--sql", sql) == [{"href": f"./{PROV}_v1-1-0.json"}]
    one = _json(capsys, "--catalog", str(catalog), "--dataset", PROV, "--version", "v1.0.0")
    assert [r["id"] for r in one] == [f"{PROV}_v1-0-0"]
    assert one[0]["datetime"] == "2021-05-11T00:00:00Z"


def test_csv_and_table_formats(catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = 'SELECT id, assets.capitals."file:checksum" AS sum FROM catalog WHERE assets.capitals IS NOT NULL'
    assert main(["catalog", "query", "--catalog", str(catalog), "--sql", sql, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3 and all(re.fullmatch("1220[0-9a-f]{64}", r["sum"]) for r in rows)
    assert main(["catalog", "query", "--catalog", str(catalog), "--latest"]) == 0
    assert "ca-on_toronto_wards" in capsys.readouterr().out


def test_bad_sql_and_missing_catalog_are_one_line(catalog: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "query", "--catalog", str(catalog), "--sql", "SELECT nope FROM catalog"]) == 1
    assert main(["catalog", "query", "--catalog", str(catalog.parent / "none.parquet")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("error: SQL failed") and "no catalog" in err[1]


class _RangeHandler(BaseHTTPRequestHandler):
    """Serves one file with HEAD and single-range GET (206), as object stores and CDNs do."""

    body = b""
    ranges = True
    served = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if not (m and self.ranges):
            data, code = self.body, 200
        else:
            start, end = int(m[1]), min(int(m[2]), len(self.body) - 1)
            data, code = self.body[start:end + 1], 206
        self.send_response(code)
        if code == 206:
            self.send_header("Content-Range", f"bytes {m[1]}-{m[1] and end}/{len(self.body)}")  # type: ignore[index]
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        type(self).served += len(data)


@pytest.fixture
def http_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, bytes]]:
    monkeypatch.setattr(catalog_writer, "ROW_GROUP_SIZE", 4)  # several row groups to prune
    records = [make_record(f"ca_set_{n:02d}", f"1.{v}.0") for n in range(6) for v in range(4)]
    out = tmp_path / "big.parquet"
    build_catalog(records, out, metadata=META)
    handler = type("H", (_RangeHandler,), {"body": out.read_bytes(), "served": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/catalog.parquet", out.read_bytes()
    server.shutdown()
    server.server_close()


def test_http_point_query_reads_only_needed_row_groups(http_catalog: tuple[str, bytes],
                                                       tmp_path: Path) -> None:
    url, body = http_catalog
    (tmp_path / "local.parquet").write_bytes(body)
    remote = query(url, dataset="ca_set_03")
    local = query(str(tmp_path / "local.parquet"), dataset="ca_set_03")
    assert remote.to_pylist() == local.to_pylist()
    assert [r["version"] for r in remote.to_pylist()] == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    f = open_remote(url)
    read_remote(f, "ca_set_03")
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    assert meta.num_row_groups == 6  # one per dataset here
    spans = []
    for g in range(meta.num_row_groups):
        cols = [meta.row_group(g).column(c) for c in range(meta.num_columns)]
        starts = [c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset
                  for c in cols]
        spans.append((min(starts), max(s + c.total_compressed_size for s, c in zip(starts, cols))))
    skipped = [sp for g, sp in enumerate(spans) if g != 3]
    # The first read is pyarrow's speculative 64 KiB footer read from the end of the file;
    # after it, no byte of another dataset's row group is fetched.
    assert f.ranges[0][1] == len(body)
    for a, b in f.ranges[1:]:
        assert all(b <= s0 or a >= s1 for s0, s1 in skipped), ((a, b), skipped)
    assert f.bytes_read < len(body)
    latest = query(url, latest=True)
    assert len(latest) == 6


def test_http_without_range_support_is_refused(http_catalog: tuple[str, bytes]) -> None:
    url, _ = http_catalog
    _RangeHandler.ranges = False
    try:
        with pytest.raises(D4CError, match="Range"):
            query(url, dataset="ca_set_01")
    finally:
        _RangeHandler.ranges = True


def test_s3_query(catalog: Path) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        s3.create_bucket(Bucket="pub")
        s3.put_object(Bucket="pub", Key="catalog.parquet", Body=catalog.read_bytes())
        rows = query("s3://pub/catalog.parquet", dataset=PROV, s3_client=s3).to_pylist()
        assert [r["version"] for r in rows] == ["1.0.0", "1.1.0"]
        with pytest.raises(D4CError, match="cannot read catalog"):
            query("s3://pub/missing.parquet", s3_client=s3)
    finally:
        server.stop()


def test_remote_point_query_skips_the_asset_columns(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`query --dataset` over Range reads the summary columns, not the assets (the bulk)."""
    monkeypatch.setattr(catalog_writer, "ROW_GROUP_SIZE", 3)  # a row group per dataset
    outs = tuple((f"out{i}", "geoparquet") for i in range(12))
    records = [make_record(f"ca_set_{n}", f"1.{v}.0", outputs=outs) for n in range(2) for v in range(3)]
    out = tmp_path / "wide.parquet"
    build_catalog(records, out, metadata=META)
    body = out.read_bytes()

    def data_bytes(columns: list[str] | None) -> int:
        f = RangeFile(len(body), lambda a, b: body[a:b + 1])
        got = read_remote(f, "ca_set_1", columns)
        assert got.num_rows == 3 and (columns is None or got.column_names == columns)
        return sum(b - a for a, b in f.ranges if b < len(body) - 8)  # not the footer reads

    assert data_bytes(COLUMNS) < data_bytes(None) / 4


def test_a_down_or_missing_http_catalog_is_a_short_phrase(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Not urllib3's text (pool objects, 'Max retries exceeded', the NewConnectionError repr)."""
    import socket
    from functools import partial
    from http.server import SimpleHTTPRequestHandler

    from d4c import http

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(D4CError) as missing:
            query(f"http://127.0.0.1:{server.server_address[1]}/none.parquet")
    finally:
        server.shutdown()
        server.server_close()
    assert str(missing.value).endswith(": HTTP 404"), missing.value
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    real = http.session
    monkeypatch.setattr(http, "session", lambda **kw: real(**{**kw, "retries": 0}))
    with pytest.raises(D4CError) as down:
        query(f"http://127.0.0.1:{port}/catalog.parquet")
    assert str(down.value) == f"cannot read catalog http://127.0.0.1:{port}/catalog.parquet: connection refused"
