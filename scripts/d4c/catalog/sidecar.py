"""The collections beside the catalog: `<catalog>.collections.json`, checked by the footer.

Every query reads the Parquet footer; at a million versions the collections (one STAC
Collection per dataset) were 7.4 of its 10.9 MB. stac-geoparquet's metadata requires only
`version` (`collections` is optional), so the footer keeps `{"version": "1.0.0"}` and our
`d4c:collections` key: the side file's sha256 and how many collections it holds. The side
file is the stac-geoparquet metadata the footer would have carried (`{"version", "collections"}`,
compact JSON with sorted keys), named after the catalog with `.parquet` replaced: the name is not in the
footer, so the same items give the same bytes whatever the file is called.

Collections are derived from the items only (d4c.catalog.collections), so a side file that
is missing or does not match the footer's sha256 (a copied catalog, or another writer
between the two writes) is never trusted: the caller recomputes them from the items.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from d4c.catalog.geo import STAC_GEOPARQUET_VERSION
from d4c.errors import D4CError

KEY = b"d4c:collections"
SUFFIX = ".collections.json"
# The side file's bytes from beside the catalog (file, S3 key, URL), or None when there is none.
Fetch = Callable[[], "bytes | None"]
_HINT = "pass the catalog.parquet that `d4c catalog build` writes"


def name_for(catalog_name: str) -> str:
    """`catalog.parquet` -> `catalog.collections.json` (beside it)."""
    return catalog_name.removesuffix(".parquet") + SUFFIX


def encode(collections: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The side file's bytes and the footer value that vouches for them."""
    # Sorted keys, compact: the JSON the footer carried. d4c.canonical's indentation runs
    # Python's pure-Python encoder, 1.2 s at 100k versions where this takes 0.1 (an append pays it).
    doc = {"version": STAC_GEOPARQUET_VERSION, "collections": dict(collections)}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ref = {"sha256": hashlib.sha256(data).hexdigest(), "collections": len(collections)}
    return data, json.dumps(ref, sort_keys=True, separators=(",", ":")).encode()


def reference(meta: Mapping[bytes, bytes] | None) -> str | None:
    """The sha256 the footer names for the side file (None: a catalog without one)."""
    raw = (meta or {}).get(KEY)
    if raw is None:
        return None
    try:
        digest = json.loads(raw)["sha256"]
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise TypeError("sha256 is not 64 hex digits")
    except (ValueError, TypeError, KeyError) as exc:
        raise D4CError(f"not a catalog file: its d4c:collections metadata does not parse ({exc})",
                       hint=_HINT) from None
    return digest


def load(meta: Mapping[bytes, bytes] | None, fetch: Fetch | None) -> dict[str, Any] | None:
    """The collections from the side file, or None when they must be recomputed from the
    items: no side file named, none fetched, or bytes that are not the ones the footer names."""
    digest = reference(meta)
    if digest is None or fetch is None:
        return None
    data = fetch()
    if data is None or hashlib.sha256(data).hexdigest() != digest:
        return None
    return parse(data, "its collections file")


def parse(data: bytes, where: str) -> dict[str, Any]:
    """stac-geoparquet metadata (side file or an older footer) -> collections by id."""
    try:
        colls = json.loads(data).get("collections") or {}
        if not isinstance(colls, dict) or not all(isinstance(c, dict) for c in colls.values()):
            raise TypeError("collections is not an object of objects")
    except (ValueError, TypeError, AttributeError) as exc:  # valid JSON, not our shape
        raise D4CError(f"not a catalog file: {where} does not parse ({exc})", hint=_HINT) from None
    return dict(colls)


def beside(catalog: Path) -> Path:
    return catalog.with_name(name_for(catalog.name))


def beside_file(path: Any) -> Fetch:
    side = beside(Path(path))
    return lambda: side.read_bytes() if side.is_file() else None


def side_key(key: str) -> str:
    """The S3 key (or URL path) of the side file of the catalog at `key`."""
    folder, _, name = key.rpartition("/")
    return f"{folder}/{name_for(name)}" if folder else name_for(name)


def beside_s3(client: Any, bucket: str, key: str) -> Fetch:
    def fetch() -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bytes(client.get_object(Bucket=bucket, Key=side_key(key))["Body"].read())
        except (ClientError, BotoCoreError):  # none there, unreadable or unreachable: recomputed from the items
            return None
    return fetch


def beside_url(url: str) -> Fetch:
    def fetch() -> bytes | None:
        import requests

        from d4c.http import session

        parts = urlsplit(url)
        try:
            resp = session().get(urlunsplit(parts._replace(path=side_key(parts.path), query="")))
        except requests.RequestException:
            return None
        return resp.content if resp.status_code == 200 else None
    return fetch


def beside_remote(url: str, s3_client: Any = None) -> Fetch:
    """The side file of a catalog at an https:// or s3:// URL."""
    if url.startswith("s3://"):
        import boto3

        parts = urlsplit(url)
        return beside_s3(s3_client or boto3.client("s3"), parts.netloc, parts.path.lstrip("/"))
    return beside_url(url)


# What a collection is made of (d4c.catalog.collections): the items' extents and texts.
_COLUMNS = ("version", "deprecated", "datetime", "start_datetime", "end_datetime", "created",
            "title", "description", "d4c:title_fr", "d4c:description_fr", "license",
            "keywords", "providers")
_TIMES = {"datetime", "start_datetime", "end_datetime", "created"}


def recompute(pf: Any) -> dict[str, Any]:
    """Every dataset's collection from the file's items: only the columns a collection is
    made of, a row group at a time (the whole items, assets and all, cost 100x more).
    Times are formatted as stac-geoparquet's reader formats them, as the items an append
    reads are."""
    import pyarrow.compute as pc

    from d4c.catalog.collections import collection_for

    names = ["collection", "bbox", *(c for c in _COLUMNS if c in pf.schema_arrow.names)]
    out: dict[str, Any] = {}
    current: list[dict[str, Any]] = []
    for g in range(pf.num_row_groups):
        table = pf.read_row_group(g, columns=names)
        cols = {n: (pc.strftime(table[n], format="%Y-%m-%dT%H:%M:%SZ") if n in _TIMES else table[n])
                .to_pylist() for n in names}
        for i, cid in enumerate(cols["collection"]):
            if current and current[0]["collection"] != cid:
                out[current[0]["collection"]] = collection_for(current)
                current = []
            box = cols["bbox"][i]
            props = {n: _strip(cols[n][i]) for n in names[2:] if cols[n][i] is not None}
            props.setdefault("datetime", None)
            current.append({"collection": cid, "properties": props,
                            "bbox": [box["xmin"], box["ymin"], box["xmax"], box["ymax"]]})
    if current:
        out[current[0]["collection"]] = collection_for(current)
    return out


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
