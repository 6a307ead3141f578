"""Query the catalog with DuckDB: a local file, or an https:// or s3:// URL.

DuckDB 2.x cannot load `httpfs` offline (its extension is downloaded at run time), so
remote catalogs are read by pyarrow through a Range-reading file object: the footer,
then only the row groups whose `collection` min/max can hold the asked dataset. The
rows read are handed to DuckDB as an Arrow table; the SQL is the same either way.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from d4c.errors import D4CError
from d4c.rangefile import RangeFile

SUMMARY = ('collection, version, id, deprecated, "sci:doi", title, datetime, '
           "start_datetime, end_datetime, created")
_HINT = "pass the catalog.parquet that `d4c catalog build` writes"
# The one item per dataset without a latest-version link is the latest.
LATEST = "NOT list_contains(list_transform(links, lambda l: l.rel), 'latest-version')"
# What the filters read from a remote catalog: the assets, the bulk of a row group, stay.
COLUMNS = ["collection", "version", "id", "deprecated", "sci:doi", "title", "datetime",
           "start_datetime", "end_datetime", "created", "links"]


def _http_file(url: str) -> RangeFile:
    import requests
    import urllib3

    from d4c.http import describe, session

    s = session()
    try:
        head = s.head(url, allow_redirects=True)
        head.raise_for_status()
        size = int(head.headers["Content-Length"])
    except requests.RequestException as exc:  # urllib3's text names pools and objects: a phrase
        why = f"HTTP {exc.response.status_code}" if exc.response is not None else describe(exc)
        raise D4CError(f"cannot read catalog {url}: {why}", hint="check the URL") from None
    except (KeyError, ValueError):
        raise D4CError(f"cannot read catalog {url}: no usable Content-Length",
                       hint="serve the catalog as a plain file") from None

    def fetch(start: int, end: int) -> bytes:
        try:
            with s.get(url, headers={"Range": f"bytes={start}-{end}"}, stream=True) as resp:
                if resp.status_code != 206:  # a server without Range support: refuse, not download all
                    raise D4CError(f"{url} answered {resp.status_code} to a Range request",
                                   hint="serve the catalog with HTTP Range support, or download it")
                return _exactly(url, resp.raw.read(end - start + 2, decode_content=True), end - start + 1)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise D4CError(f"cannot read catalog {url}: {describe(exc)}", hint="check the URL") from None

    return RangeFile(size, fetch)


def _s3_file(url: str, client: Any = None) -> RangeFile:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    s3 = client or boto3.client("s3")
    try:
        size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except (ClientError, BotoCoreError) as exc:
        raise D4CError(f"cannot read catalog {url}: {exc}") from None

    def fetch(start: int, end: int) -> bytes:
        got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
        return _exactly(url, bytes(got["Body"].read(end - start + 2)), end - start + 1)

    return RangeFile(size, fetch)


def _exactly(url: str, data: bytes, want: int) -> bytes:
    """A range's bytes, read no further than one past it: a server that sends more or less
    than it was asked (a size it lied about) is one line, and never fills the memory."""
    if len(data) != want:
        raise D4CError(f"{url} answered {'more' if len(data) > want else len(data)} bytes to a Range "
                       f"request for {want}", hint="its size (Content-Length) and its bytes disagree: "
                       "check the URL, or serve the catalog again")
    return data


def open_remote(url: str, s3_client: Any = None) -> RangeFile:
    if url.startswith(("http://", "https://")):
        return _http_file(url)
    if url.startswith("s3://"):
        return _s3_file(url, s3_client)
    raise D4CError(f"unsupported catalog URL {url}", hint="use a path, https:// or s3://")


def groups_for(pf: pq.ParquetFile, dataset: str) -> list[int]:
    """The row groups whose `collection` min/max can hold `dataset` (one, unless the
    dataset has more versions than a row group holds)."""
    leaves = pf.metadata.schema  # Parquet leaf columns: nested fields flatten, so search by path
    col = next((i for i in range(len(leaves)) if leaves.column(i).path == "collection"), None)
    if col is None or not pa.types.is_string(pf.schema_arrow.field("collection").type):
        raise D4CError("the catalog read is not a catalog file: it has no string `collection` column", hint=_HINT)
    groups = []
    for g in range(pf.num_row_groups):
        stats = pf.metadata.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max or stats.min <= dataset <= stats.max:
            groups.append(g)
    return groups


def read_remote(source: Any, dataset: str | None, columns: list[str] | None = None) -> pa.Table:
    """Read the row groups that can hold `dataset` (all when None) from a file object;
    only `columns` when given."""
    try:  # a lying server's bytes, or a file that is not ours: one line
        pf = pq.ParquetFile(source)
        if dataset is None:
            return pf.read(columns=columns)
        groups = groups_for(pf, dataset)
        if not groups:
            empty = pf.schema_arrow.empty_table()
            return empty.select(columns) if columns else empty
        return pf.read_row_groups(groups, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise D4CError(f"the catalog read is not a catalog file: {_first_line(exc)}", hint=_HINT) from None


def query(catalog: str, *, dataset: str | None = None, version: str | None = None,
          latest: bool = False, sql: str | None = None, s3_client: Any = None) -> pa.Table:
    """Rows of the catalog as an Arrow table; `sql` runs against a view named `catalog`."""
    con = duckdb.connect()
    if "://" in catalog:
        table = read_remote(open_remote(catalog, s3_client), None if sql else dataset,
                            None if sql else COLUMNS)
        con.register("catalog_rows", table)
        con.execute("CREATE VIEW catalog AS SELECT * FROM catalog_rows")
    else:
        from pathlib import Path

        if not Path(catalog).is_file():
            raise D4CError(f"no catalog at {catalog}", hint="run `d4c catalog build` first")
        path = str(Path(catalog).resolve()).replace("'", "''")
        try:
            con.execute(f"CREATE VIEW catalog AS SELECT * FROM read_parquet('{path}')")
        except duckdb.Error as exc:
            raise D4CError(f"{catalog} is not a catalog file: {_first_line(exc)}", hint=_HINT) from None
    if sql:
        try:
            return con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise D4CError(f"SQL failed: {str(exc).splitlines()[0]}",
                           hint="the table is named `catalog`; quote names with colons") from None
    where, params = [], []
    if dataset:
        where.append("collection = ?")
        params.append(dataset)
    if version:
        where.append("version = ?")
        params.append(version.removeprefix("v"))
    if latest:
        where.append(LATEST)
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    # The file is sorted by collection and SemVer; DuckDB keeps that order for a filtered scan.
    try:
        return con.sql(f"SELECT {SUMMARY} FROM catalog{cond}", params=params).to_arrow_table()
    except duckdb.Error as exc:  # not our columns, or pages that do not decode
        raise D4CError(f"{catalog} is not a catalog file: {_first_line(exc)}", hint=_HINT) from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
