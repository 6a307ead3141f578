"""Add one release to an existing catalog without losing concurrent additions.

Only the appended dataset's row group is decoded to items and re-linked. Usually only
that span of row groups is written again and the others' bytes are copied
(d4c.catalog.splice); when a cut moves or the schema changes (d4c.catalog.narrow), the
other datasets stream through as Arrow, row group by row group, into a new file laid out
by the same rule as a build (d4c.catalog.writer.CatalogWriter). Because the schema,
order, items, layout and collections are all pure functions of the set of items, either
way the result is the file a rebuild from releases/ writes (tested byte for byte).

Concurrency: a local file is updated under an exclusive lock (flock on `<file>.lock`)
with a temp file + rename; an S3 object with a conditional write: `IfMatch` on the
ETag read (`IfNoneMatch='*'` when there was none), and on 412/409 re-read and redo.
"""
from __future__ import annotations

import fcntl
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from d4c.catalog import narrow, sidecar, splice
from d4c.catalog.build import Metadata, metadata_from, paused_gc
from d4c.catalog.collections import Collection, collection_for
from d4c.catalog.items import link_versions, record_to_item
from d4c.catalog.query import groups_for
from d4c.catalog.records import Record, check_record
from d4c.catalog.writer import (
    Keys,
    catalog_writer,
    conform,
    dataset_slices,
    items_to_table,
    keys_of_items,
    schema_from_keys,
    table_to_items,
)
from d4c.errors import D4CError

_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def _datasets(pf: pq.ParquetFile, read: dict[int, pa.Table],
              groups: range | None = None) -> Iterator[pa.Table]:
    """The rows of the file (or of `groups`), one whole dataset at a time (a dataset may
    span row groups); `read` holds row groups already decoded."""
    carry: pa.Table | None = None
    for g in groups if groups is not None else range(pf.num_row_groups):
        group = read.pop(g) if g in read else pf.read_row_group(g)
        for rows in dataset_slices(group):
            if carry is not None and carry["collection"][0] == rows["collection"][0]:
                carry = pa.concat_tables([carry, rows])
                continue
            if carry is not None:
                yield carry
            carry = rows
    if carry is not None:
        yield carry


def _merged(pf: pq.ParquetFile | None, read: dict[int, pa.Table], cid: str,
            rows: pa.Table, seen: int, groups: range | None = None) -> Iterator[pa.Table]:
    """The file's datasets in order (or those of `groups`), with `cid`'s rows replaced by
    (or added as) `rows`; the `seen` rows of `cid` that were re-linked must be all it drops
    (statistics that hide some of its rows would lose those versions)."""
    placed, dropped = False, 0
    for old in _datasets(pf, read, groups) if pf is not None else ():
        name = old["collection"][0].as_py()
        if not placed and name >= cid:
            yield rows
            placed = True
        if name != cid:
            yield old
        else:
            dropped += old.num_rows
    if not placed:
        yield rows
    if dropped != seen:
        raise D4CError(f"the catalog's row group statistics hide rows of {cid}: {dropped} in the file, "
                       f"{seen} where they say", hint="regenerate it from releases/ with `d4c catalog build`")


def _linked(pf: pq.ParquetFile | None, record: Record, metadata: Metadata,
            read: dict[int, pa.Table]) -> tuple[list[Any], Keys]:
    """The dataset's items with the new one, re-linked, and the key sets of its items
    before: only its row groups are read (kept in `read` for the rewrite)."""
    new = record_to_item(record, metadata(record))
    cid, version = new["collection"], new["properties"]["version"]
    old = []
    if pf is not None:
        read.update({g: pf.read_row_group(g) for g in groups_for(pf, cid)})
        if read:
            table = pa.concat_tables(read.values())
            old = table_to_items(table.filter(pc.equal(table["collection"], cid)))
    before = keys_of_items(old)
    # by version: link_versions refuses id clashes
    return link_versions([*(i for i in old if i["properties"]["version"] != version), new]), before


def rewrite(source: Any, record: Record, metadata: Metadata, dest: Path,
            fetch: sidecar.Fetch | None = None) -> bool:
    """Write to `dest` the catalog at `source` (path, file object, or None) plus `record`;
    `fetch` reads the source's collections file (d4c.catalog.sidecar). True when the
    untouched row groups were copied as bytes (d4c.catalog.splice), False when the whole
    file was written again."""
    pf = _open(source) if source is not None else None
    read: dict[int, pa.Table] = {}
    with paused_gc():
        linked, before = _linked(pf, record, metadata, read)
        rows = items_to_table(linked)
    cid = linked[0]["collection"]
    seen = sum(int(pc.sum(pc.equal(t["collection"], cid)).as_py() or 0) for t in read.values())
    old_schema = pf.schema_arrow if pf is not None and pf.metadata.num_rows else rows.schema
    schema = narrow.schema_after(pf, read, cid, old_schema, before, keys_of_items(linked))
    colls = _collections(pf, fetch) if pf is not None else {}
    colls[cid] = collection_for(linked)
    colls = {k: colls[k] for k in sorted(colls)}
    span = splice.span_for(pf, cid) if pf is not None and schema == old_schema else None
    if span is not None:
        groups = range(span[0], span[1] + 1)
        datasets = (t if t.schema == schema else conform(t, schema)
                    for t in _merged(pf, read, cid, rows, seen, groups))
        if splice.splice(source, pf, span, datasets, schema, colls, dest):  # type: ignore[arg-type]
            return True
    with catalog_writer(dest, schema) as writer:
        for table in _merged(pf, read, cid, rows, seen):
            writer.add(table if table.schema == schema else conform(table, schema))
        writer.collections = colls
    return False


def _open(source: Any) -> pq.ParquetFile:
    """The catalog as Parquet; a file that is not one (or not ours) is one line, not a traceback."""
    where = source if isinstance(source, (str, Path)) else "the catalog read"
    hint = "pass the catalog.parquet that `d4c catalog build` writes"
    try:
        pf = pq.ParquetFile(source)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise D4CError(f"{where} is not a catalog file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                       hint=hint) from None
    meta = pf.metadata.metadata or {}
    if b"stac-geoparquet" in meta:  # ours has only the version; an older one the collections
        sidecar.parse(meta[b"stac-geoparquet"], "its stac-geoparquet metadata")
    sidecar.reference(meta)
    odd = _not_ours(pf.schema_arrow)
    if odd is not None:  # what the pruning, the items and the collections read
        raise D4CError(f"{where} is not a catalog file: its `{odd}` column is missing or not the catalog's type",
                       hint=hint)
    return pf


def _not_ours(schema: pa.Schema) -> str | None:
    """The first column every catalog has (typed as the writer types it) that `schema` lacks."""
    want = schema_from_keys((set(), set(), set()))
    for name in ("collection", "id", "bbox", "version"):
        if schema.get_field_index(name) < 0 or not schema.field(name).type.equals(want.field(name).type):
            return name
    if schema.get_field_index("assets") < 0 or not pa.types.is_struct(schema.field("assets").type):
        return "assets"  # its fields are the catalog's asset keys
    return None


def _collections(pf: pq.ParquetFile, fetch: sidecar.Fetch | None) -> dict[str, Collection]:
    """The catalog's collections: its side file when that is the one the footer names, else
    recomputed from the items (a side file is never trusted blindly)."""
    found = sidecar.load(pf.metadata.metadata, fetch)
    if found is not None:
        return found
    with paused_gc():
        return sidecar.recompute(pf)


def read_catalog(source: Any, fetch: sidecar.Fetch | None = None) -> tuple[pa.Table, dict[str, Collection]]:
    """A catalog (path, or file object with `fetch` for its collections file) -> its table
    and collections."""
    pf = _open(source)
    if fetch is None and isinstance(source, (str, Path)):
        fetch = sidecar.beside_file(source)
    with _readable(source):
        return pf.read(), _collections(pf, fetch)


@contextmanager
def _readable(source: Any) -> Iterator[None]:
    """A row group whose bytes do not decode (a corrupt or crafted file) is one line, and so
    is a file the system will not read or write (an OSError with an errno, not pyarrow's)."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        where = source if isinstance(source, (str, Path)) else "the catalog read"
        if isinstance(exc, OSError) and exc.errno is not None:
            raise D4CError(f"{where}: cannot update the catalog: {exc}",
                           hint="check that path and the catalog's folder (a file, writable)") from None
        raise D4CError(f"{where}: the catalog does not read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                       hint="regenerate it from releases/ with `d4c catalog build`") from None


def _append_local(record: Record, path: Path, metadata: Metadata) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        rewrite(path if path.exists() else None, record, metadata, path, sidecar.beside_file(path))


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
            existing: Any = io.BytesIO(got["Body"].read())
        except ClientError as exc:
            if _code(exc) not in {"NoSuchKey", "404"}:
                raise D4CError(f"cannot read catalog {url}: {_code(exc)}") from None
            etag, existing = None, None
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / (PurePosixPath(key).name or "catalog.parquet")
            rewrite(existing, record, metadata, out, sidecar.beside_s3(s3, bucket, key))
            body = out.read_bytes()
            side = out.with_name(sidecar.name_for(out.name)).read_bytes()
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body,
                          ContentType="application/vnd.apache.parquet", **cond)
        except ClientError as exc:
            if _code(exc) not in _CONFLICT:
                raise D4CError(f"cannot write catalog {url}: {_code(exc)}") from None
        else:
            # After the catalog, whose conditional write is the one commit point: a reader
            # between the two, or a late write of a lost race, finds a side file whose
            # sha256 is not the footer's, and recomputes the collections from the items.
            s3.put_object(Bucket=bucket, Key=sidecar.side_key(key), Body=side,
                          ContentType="application/json")
            return
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
        from botocore.exceptions import BotoCoreError

        try:
            with _readable(dest):
                _append_s3(record, dest, meta, s3_client, attempts)
        except BotoCoreError as exc:  # the endpoint is down or unreachable, mid-read or mid-write
            raise D4CError(f"cannot append to {dest}: {exc}", hint="check the S3 endpoint and network, then "
                           "append again (the catalog object changes only by its one conditional put)") from None
    elif "://" in dest:
        raise D4CError(f"cannot append to {dest}", hint="use a local path or an s3:// URL")
    else:
        with _readable(dest):
            _append_local(record, Path(dest), meta)


__all__ = ["append_record", "read_catalog", "rewrite"]
