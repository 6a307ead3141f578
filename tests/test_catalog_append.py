"""Appends: the same bytes as a rebuild, idempotent, and safe under concurrent writers
(local lock; S3 conditional writes on a real moto server)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from catalog_factory import five_records, make_record
from d4c.catalog import append_record, build_catalog, metadata_from
from d4c.catalog.append import read_catalog
from moto.server import ThreadedMotoServer

META = metadata_from(None)


def _sequence() -> list[dict]:
    """Five records plus versions that string order would misplace (1.10.0 vs 1.9.0)."""
    extra = [make_record("ca_d4c_provinces-territories", v, outputs=(("capitals", "geoparquet"),
                                                                    ("boundaries", "flatgeobuf")))
             for v in ("1.10.0", "1.9.0")]
    return [*five_records(), *extra]


def test_appends_equal_rebuild_byte_for_byte(tmp_path: Path) -> None:
    records = _sequence()
    rebuilt = tmp_path / "rebuilt.parquet"
    build_catalog(records, rebuilt, metadata=META)
    appended = tmp_path / "appended.parquet"
    for record in [records[6], records[2], records[0], records[5], records[4], records[1],
                   records[3]]:
        append_record(record, appended, metadata=META)
    assert appended.read_bytes() == rebuilt.read_bytes()
    versions = pq.read_table(appended, columns=["collection", "version"]).to_pylist()
    prov = [r["version"] for r in versions if r["collection"] == "ca_d4c_provinces-territories"]
    assert prov == ["1.0.0", "1.1.0", "1.9.0", "1.10.0"]  # SemVer, not string order
    before = appended.read_bytes()
    append_record(records[1], appended, metadata=META)  # a rerun of the release step
    assert appended.read_bytes() == before


def test_append_widens_the_schema_like_a_rebuild(tmp_path: Path) -> None:
    """A first version with no software, mirrors or French text; then one with all three."""
    bare = make_record("ca_a_b", "1.0.0", targets=("local",), doi=None)
    bare["manifest"]["environment"] = {}
    del bare["metadata"]["title"]["fr"]
    records = [bare, make_record("ca_c_d", "1.0.0", outputs=(("dem", "cog"),))]
    for record in records:
        append_record(record, tmp_path / "appended.parquet", metadata=META)
    build_catalog(records, tmp_path / "rebuilt.parquet", metadata=META)
    assert (tmp_path / "appended.parquet").read_bytes() == (tmp_path / "rebuilt.parquet").read_bytes()


def test_append_refuses_unknown_destinations(tmp_path: Path) -> None:
    from d4c.errors import D4CError

    with pytest.raises(D4CError, match="cannot append"):
        append_record(make_record("ca_a_b", "1.0.0"), "https://example.org/c.parquet",
                      metadata=META)
    with pytest.raises(D4CError, match="lacks"):
        append_record({"id": "ca_a_b"}, tmp_path / "c.parquet", metadata=META)
    assert not (tmp_path / "c.parquet").exists()


def test_local_concurrent_appends_keep_both(tmp_path: Path) -> None:
    dest = tmp_path / "catalog.parquet"
    records = [make_record("ca_a_b", f"1.{n}.0") for n in range(6)]
    threads = [threading.Thread(target=append_record, args=(r, dest), kwargs={"metadata": META})
               for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    table, colls = read_catalog(dest)
    assert sorted(table["version"].to_pylist()) == [f"1.{n}.0" for n in range(6)]
    assert list(colls) == ["ca_a_b"]


@pytest.fixture
def s3() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="catalog")
    yield client
    server.stop()


class _RaceClient:
    """The real client, but each writer's first put waits until both writers have read
    the same catalog: this forces the conflict the ETag condition must resolve. The two
    first puts are then sent one after the other (the S3 server is not what is tested)."""

    def __init__(self, client: Any, barrier: threading.Barrier) -> None:
        self._client, self._barrier = client, barrier
        self.puts = self.conflicts = 0
        self._first = threading.local()
        self._leader_done = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **kwargs: Any) -> Any:
        if not kwargs["Key"].endswith(".parquet"):  # the collections file, after the catalog
            return self._client.put_object(**kwargs)
        leader = None
        if not getattr(self._first, "done", False):
            self._first.done = True
            leader = self._barrier.wait(timeout=30) == 0
            if not leader:
                assert self._leader_done.wait(timeout=30)
        self.puts += 1
        try:
            return self._client.put_object(**kwargs)
        except self._client.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] in {"PreconditionFailed", "ConditionalRequestConflict"}:
                self.conflicts += 1
            raise
        finally:
            if leader:
                self._leader_done.set()


def test_s3_concurrent_appends_keep_both_rows(s3: Any) -> None:
    url = "s3://catalog/stac/catalog.parquet"
    append_record(make_record("ca_a_b", "1.0.0"), url, metadata=META, s3_client=s3)
    race = _RaceClient(s3, threading.Barrier(2))
    errors: list[BaseException] = []

    def writer(record: dict) -> None:
        try:
            append_record(record, url, metadata=META, s3_client=race)
        except BaseException as exc:  # noqa: BLE001 - surfaced below: a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(make_record(ds, v),))
               for ds, v in (("ca_a_b", "1.1.0"), ("ca_c_d", "2.0.0"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert race.conflicts == 1 and race.puts == 3  # one lost the race, re-read and redid
    import io

    body = s3.get_object(Bucket="catalog", Key="stac/catalog.parquet")["Body"].read()
    table, colls = read_catalog(io.BytesIO(body))
    assert sorted(table["id"].to_pylist()) == ["ca_a_b_v1-0-0", "ca_a_b_v1-1-0", "ca_c_d_v2-0-0"]
    assert set(colls) == {"ca_a_b", "ca_c_d"}
    deprecated = dict(zip(table["id"].to_pylist(), table["deprecated"].to_pylist()))
    assert deprecated["ca_a_b_v1-0-0"] and not deprecated["ca_a_b_v1-1-0"]


def test_s3_appends_equal_local_rebuild(s3: Any, tmp_path: Path) -> None:
    records = five_records()
    for record in records:
        append_record(record, "s3://catalog/c.parquet", metadata=META, s3_client=s3)
    build_catalog(records, tmp_path / "c.parquet", metadata=META)
    body = s3.get_object(Bucket="catalog", Key="c.parquet")["Body"].read()
    assert body == (tmp_path / "c.parquet").read_bytes()
    side = s3.get_object(Bucket="catalog", Key="c.collections.json")["Body"].read()
    assert side == (tmp_path / "c.collections.json").read_bytes()


def test_a_missing_or_stale_collections_file_is_recomputed(tmp_path: Path) -> None:
    """The side file is trusted only when its sha256 is the footer's: otherwise the
    collections come from the items, and an append still writes the rebuild's bytes."""
    records = five_records()
    build_catalog(records, tmp_path / "rebuilt.parquet", metadata=META)
    want = read_catalog(tmp_path / "rebuilt.parquet")[1]
    dest, side = tmp_path / "c.parquet", tmp_path / "c.collections.json"
    for record in records[:-1]:
        append_record(record, dest, metadata=META)
    side.unlink()
    assert read_catalog(dest)[1] == {k: want[k] for k in sorted({r["id"] for r in records[:-1]})}
    side.write_bytes(b'{"collections": {"x": {}}}')  # not the footer's sha256: ignored
    append_record(records[-1], dest, metadata=META)
    assert dest.read_bytes() == (tmp_path / "rebuilt.parquet").read_bytes()
    assert side.read_bytes() == (tmp_path / "rebuilt.collections.json").read_bytes()
    edited = side.read_bytes().replace(b"Dataset", b"Pirates")
    assert edited != side.read_bytes()
    side.write_bytes(edited)  # edited: not trusted
    assert read_catalog(dest)[1] == want


@pytest.mark.parametrize("meta", [b"[1]", b"not json", b'{"collections": [1]}', b'{"collections": {"a": 1}}'])
def test_a_hostile_catalog_file_is_one_line(tmp_path: Path, meta: bytes) -> None:
    """Not Parquet, or a stac-geoparquet key that is not ours: a D4CError naming the file, not a traceback."""
    import pyarrow as pa
    from d4c.errors import D4CError

    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"garbage")
    with pytest.raises(D4CError, match="junk.parquet is not a catalog file"):
        append_record(make_record("ca_x", "1.0.0"), junk)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({b"stac-geoparquet": meta}), bad)
    with pytest.raises(D4CError, match="metadata does not parse"):
        read_catalog(bad)
    with pytest.raises(D4CError, match="metadata does not parse"):
        append_record(make_record("ca_x", "1.0.0"), bad)


@pytest.mark.parametrize("ref", [b"[]", b"{}", b'{"sha256": "../x"}', b'{"sha256": 5}'])
def test_a_hostile_collections_reference_is_one_line(tmp_path: Path, ref: bytes) -> None:
    import pyarrow as pa
    from d4c.errors import D4CError

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({b"d4c:collections": ref}), bad)
    with pytest.raises(D4CError, match="d4c:collections metadata does not parse"):
        read_catalog(bad)


def _latest_only(record: dict[str, Any], *mirrors: str) -> dict[str, Any]:
    """`record` with `mirrors` kept for every version but `processed`, which keeps only the latest."""
    record["mirrors"] = [{"name": m, "retain": "latest" if m == "processed" else "all"} for m in mirrors]
    return record


@pytest.mark.parametrize("others_use_it", [False, True])
def test_an_append_drops_a_column_no_item_uses_any_more(tmp_path: Path, others_use_it: bool) -> None:
    """A's first version has the only `processed` alternate (a `retain: latest` copy), and
    only it has an asset `tbl`; its next version went to other targets and A's 1.0.0 is
    released again without `tbl`, so no item names either. The rebuild's file lacks their
    columns, and so must the append's (unless B still uses them)."""
    other = ("s3", "processed") if others_use_it else ("s3",)
    b = _latest_only(make_record("ca_b_b", "1.0.0", targets=other), *other)
    a1 = _latest_only(make_record("ca_a_a", "1.0.0", targets=("s3", "processed"),
                                  outputs=(("capitals", "geoparquet"), ("tbl", "csv"))), "s3", "processed")
    a2 = _latest_only(make_record("ca_a_a", "1.1.0", targets=("s3", "zenodo")), "s3", "zenodo")
    a1_again = _latest_only(make_record("ca_a_a", "1.0.0", targets=("s3", "processed"),
                                        released_at="2026-01-01T00:00:00Z"), "s3", "processed")
    appended = tmp_path / "appended.parquet"
    for record in (a1, b):
        append_record(record, appended, metadata=META)
    before = pq.read_schema(appended).field("assets").type
    assert "tbl" in before.names and "processed" in before.field("capitals").type.field("alternate").type.names
    for n, record in enumerate((a2, a1_again)):  # drops `processed` from 1.0.0, then `tbl`
        append_record(record, appended, metadata=META)
        rebuilt = tmp_path / f"rebuilt{n}.parquet"
        build_catalog([a1, b, a2] if n == 0 else [a1_again, b, a2], rebuilt, metadata=META)
        assert appended.read_bytes() == rebuilt.read_bytes()
    assets = pq.read_schema(appended).field("assets").type
    assert "tbl" not in assets.names
    assert ("processed" in assets.field("capitals").type.field("alternate").type.names) == others_use_it
