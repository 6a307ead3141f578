"""Add one release to an existing catalog without losing concurrent additions.

Only the appended dataset's rows are decoded and re-linked; the other rows stay Arrow
and are cast to the widened schema. Because the schema, order, items and collections
are all pure functions of the set of items, the result is the file a rebuild from
releases/ writes (tested byte for byte).

Concurrency: a local file is updated under an exclusive lock (flock on `<file>.lock`)
with a temp file + rename; an S3 object with a conditional write: `IfMatch` on the
ETag read (`IfNoneMatch='*'` when there was none), and on 412/409 re-read and redo.
"""
from __future__ import annotations

import bisect
import fcntl
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from d4c.catalog.build import Metadata, metadata_from, paused_gc
from d4c.catalog.collections import Collection, collection_for
from d4c.catalog.items import link_versions, record_to_item
from d4c.catalog.records import Record, check_record
from d4c.catalog.writer import (
    conform,
    items_to_table,
    keys_of_items,
    keys_of_schema,
    schema_from_keys,
    table_to_items,
    write_parquet,
)
from d4c.errors import D4CError

_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def merge(existing: pa.Table | None, collections: dict[str, Collection], record: Record,
          metadata: Metadata) -> tuple[pa.Table, dict[str, Collection]]:
    """The catalog table and collections after adding (or re-adding) one record."""
    new = record_to_item(record, metadata(record))
    cid = new["collection"]
    if existing is None or existing.num_rows == 0:
        linked = link_versions([new])
        return items_to_table(linked), {cid: collection_for(linked)}
    # Rows are sorted by collection: the dataset is one slice (zero-copy, no filtering).
    ids = existing["collection"].to_pylist()
    lo, hi = bisect.bisect_left(ids, cid), bisect.bisect_right(ids, cid)
    version = new["properties"]["version"]  # by version: link_versions refuses id clashes
    same = [i for i in table_to_items(existing.slice(lo, hi - lo))
            if i["properties"]["version"] != version]
    linked = link_versions([*same, new])
    rows = items_to_table(linked)
    old_keys, new_keys = keys_of_schema(existing.schema), keys_of_items(linked)
    schema = schema_from_keys(tuple(a | b for a, b in zip(old_keys, new_keys)))  # type: ignore[arg-type]
    before, after = existing.slice(0, lo), existing.slice(hi)
    table = pa.concat_tables([conform(t, schema) for t in (before, rows, after)])
    merged = {k: v for k, v in collections.items() if k != cid}
    merged[cid] = collection_for(linked)
    return table, {k: merged[k] for k in sorted(merged)}


def _collections(meta: dict[bytes, bytes] | None) -> dict[str, Collection]:
    raw = (meta or {}).get(b"stac-geoparquet")
    return dict(json.loads(raw).get("collections") or {}) if raw else {}


def read_catalog(source: Any) -> tuple[pa.Table, dict[str, Collection]]:
    """A catalog file (path or file object) -> its table and embedded collections."""
    pf = pq.ParquetFile(source)
    return pf.read(), _collections(pf.metadata.metadata)


def _append_local(record: Record, path: Path, metadata: Metadata) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        existing, colls = read_catalog(path) if path.exists() else (None, {})
        with paused_gc():
            table, colls = merge(existing, colls, record, metadata)
        write_parquet(table, colls, path)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _append_s3(record: Record, url: str, metadata: Metadata, client: Any, attempts: int) -> None:
    import io

    import boto3
    from botocore.exceptions import ClientError

    parsed = urlparse(url)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    s3 = client or boto3.client("s3")
    for attempt in range(attempts):
        try:
            got = s3.get_object(Bucket=bucket, Key=key)
            etag: str | None = got["ETag"]
            existing, colls = read_catalog(io.BytesIO(got["Body"].read()))
        except ClientError as exc:
            if _code(exc) not in {"NoSuchKey", "404"}:
                raise D4CError(f"cannot read catalog {url}: {_code(exc)}") from None
            etag, existing, colls = None, None, {}
        with paused_gc():
            table, colls = merge(existing, colls, record, metadata)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "catalog.parquet"
            write_parquet(table, colls, out)
            body = out.read_bytes()
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body,
                          ContentType="application/vnd.apache.parquet", **cond)
            return
        except ClientError as exc:
            if _code(exc) not in _CONFLICT:
                raise D4CError(f"cannot write catalog {url}: {_code(exc)}") from None
        time.sleep(random.uniform(0, 0.05 * 2 ** min(attempt, 5)))  # someone else won: redo
    raise D4CError(f"catalog {url} kept changing under {attempts} attempts",
                   hint="retry the append; regenerating with `d4c catalog build` is always safe")


def _repo_or_none() -> Path | None:
    from d4c.paths import repo_root

    try:
        return repo_root()
    except D4CError:
        return None  # then the record must carry its own `metadata`


def append_record(record: Record, target_or_path: str | Path, *, metadata: Metadata | None = None,
                  s3_client: Any = None, attempts: int = 20) -> None:
    """Add `record` (a release record) to the catalog at a local path or `s3://bucket/key`."""
    check_record(record, "release record")
    meta = metadata or metadata_from(_repo_or_none())
    dest = str(target_or_path)
    if dest.startswith("s3://"):
        _append_s3(record, dest, meta, s3_client, attempts)
    elif "://" in dest:
        raise D4CError(f"cannot append to {dest}", hint="use a local path or an s3:// URL")
    else:
        _append_local(record, Path(dest), meta)


__all__ = ["append_record", "merge", "read_catalog"]
