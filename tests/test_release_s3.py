"""The s3 target against a real S3 server over HTTP (moto's server mode)."""
# ruff: noqa: F811 - pytest fixtures imported from test_release_support
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from d4c.errors import D4CError
from d4c.release.targets import TargetConfig, make_target
from d4c.release.targets.s3 import S3Target
from test_release_support import S3_ENV, FaultProxy, MotoS3, moto_s3  # noqa: F401 - fixture

MiB = 1 << 20


def _target(s3: MotoS3, bucket: str, **kw: object) -> S3Target:
    layout = str(kw.pop("layout", "{id}/v{version}/{file}"))
    opts = {"bucket": bucket, "endpoint_url": s3.endpoint, **kw}
    cfg = TargetConfig(kind="s3", name="s3", url=f"{s3.endpoint}/{bucket}/{{key}}", layout=layout,
                       retain="latest", credentials={"access_key_id": "D4C_TEST_S3_KEY",
                                                     "secret_access_key": "D4C_TEST_S3_SECRET"},
                       options=opts)
    target = make_target(cfg, S3_ENV)
    assert isinstance(target, S3Target)
    return target


def _file(path: Path, data: bytes) -> tuple[Path, str, str]:
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("part_checksum", ["SHA256", "CRC32"])
def test_multipart_upload_verifies_and_is_immutable(moto_s3: MotoS3, tmp_path: Path,
                                                    part_checksum: str) -> None:
    bucket = moto_s3.bucket()
    t = _target(moto_s3, bucket, multipart_chunksize=5 * MiB, max_concurrency=3,
                part_checksum=part_checksum)
    path, sha, md5 = _file(tmp_path / "big.bin", os.urandom(12 * MiB + 123))
    key = "ca_x/v1.0.0/ca_x_v1.0.0.bin"
    assert not t.exists(key, sha)
    t.upload(key, path, sha, md5)
    head = moto_s3.client().head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == path.stat().st_size
    assert head["Metadata"]["sha256"] == sha
    assert head.get(f"Checksum{part_checksum}")  # per-part checksums were sent and kept
    assert t.verify(key, sha) and t.exists(key, sha)
    assert t._composite[key] == head[f"Checksum{part_checksum}"].split("-")[0]  # proven at upload
    # a fresh target (no memory of the upload) verifies by reading the object back ...
    assert _target(moto_s3, bucket).verify(key, sha)
    # ... or, told what the journal remembered, by the server's composite alone
    fresh = _target(moto_s3, bucket)
    fresh.recall(t.remembered())
    fresh._read_hash = lambda key: pytest.fail("read back although the composite was known")  # type: ignore[method-assign]
    assert fresh.verify(key, sha)
    # same bytes again: the conditional write fails, our checksum matches, nothing changes
    t.upload(key, path, sha, md5)
    # different bytes at the same key: refused, naming the key
    other, osha, omd5 = _file(tmp_path / "other.bin", b"other bytes")
    with pytest.raises(D4CError, match=key):
        t.upload(key, other, osha, omd5)
    assert moto_s3.client().get_object(Bucket=bucket, Key=key)["Body"].read() == path.read_bytes()
    assert moto_s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_conditional_write_refuses_overwrite_of_small_object(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.bucket()
    t = _target(moto_s3, bucket)
    a, asha, amd5 = _file(tmp_path / "a", b"first")
    b, bsha, bmd5 = _file(tmp_path / "b", b"second")
    t.upload("k/a", a, asha, amd5)
    with pytest.raises(D4CError, match="k/a"):
        t.upload("k/a", b, bsha, bmd5)
    with pytest.raises(D4CError, match="different sha256"):
        t.exists("k/a", bsha)
    assert moto_s3.client().get_object(Bucket=bucket, Key="k/a")["Body"].read() == b"first"


def test_corrupted_object_is_detected_by_verify(moto_s3: MotoS3, tmp_path: Path) -> None:
    bucket = moto_s3.bucket()
    t = _target(moto_s3, bucket)
    path, sha, md5 = _file(tmp_path / "a", b"good bytes" * 100)
    t.upload("k/a", path, sha, md5)
    assert t.verify("k/a", sha)
    # someone replaces the bytes but keeps our metadata: only the content can tell
    moto_s3.client().put_object(Bucket=bucket, Key="k/a", Body=b"evil bytes" * 100,
                                Metadata={"sha256": sha, "size": str(1000)})
    assert not t.verify("k/a", sha)
    assert not _target(moto_s3, bucket).verify("k/a", sha)
    # the plan's look refuses it before any write; the conditional PUT's 412 says so too
    with pytest.raises(D4CError, match="has our sha256 in its metadata but not our bytes"):
        t.look("k/a", sha)
    with pytest.raises(D4CError, match="is there .412. but does not hold our bytes"):
        t.upload("k/a", path, sha, md5)
    # a multipart object with a damaged copy is caught too (read-back path)
    big, bsha, bmd5 = _file(tmp_path / "big", os.urandom(11 * MiB))
    t2 = _target(moto_s3, bucket, multipart_chunksize=5 * MiB)
    t2.upload("k/big", big, bsha, bmd5)
    moto_s3.client().put_object(Bucket=bucket, Key="k/big", Body=os.urandom(11 * MiB),
                                Metadata={"sha256": bsha, "size": str(11 * MiB)})
    assert not _target(moto_s3, bucket).verify("k/big", bsha)


@pytest.mark.parametrize("layout", ["{id}/v{version}/{file}", "dataforcanada/{id}/processed/{file}"])
def test_retain_latest_deletes_only_older_versions_of_the_dataset(
        moto_s3: MotoS3, tmp_path: Path, layout: str) -> None:
    bucket = moto_s3.bucket()
    t = _target(moto_s3, bucket, layout=layout)
    path, sha, md5 = _file(tmp_path / "f", b"x")
    keys = {}
    for ident, version, file in [("ca_a", "1.0.0", "ca_a_v1.0.0.parquet"),
                                 ("ca_a", "1.0.0", "ca_a_v1.0.0_manifest.json"),
                                 ("ca_a", "1.1.0", "ca_a_v1.1.0.parquet"),
                                 ("ca_ab", "1.0.0", "ca_ab_v1.0.0.parquet")]:
        keys[file] = t.key_for(ident, version, file)
        t.upload(keys[file], path, sha, md5)
    t.upload("sources/sha256/2d/2d71", path, sha, md5)
    removed = t.delete_older_versions("ca_a", "1.1.0")
    assert removed == sorted([keys["ca_a_v1.0.0.parquet"], keys["ca_a_v1.0.0_manifest.json"]])
    assert moto_s3.keys(bucket) == sorted([keys["ca_a_v1.1.0.parquet"], keys["ca_ab_v1.0.0.parquet"],
                                           "sources/sha256/2d/2d71"])
    assert t.delete_older_versions("ca_a", "1.1.0") == []


def test_missing_credentials_name_the_variable_not_a_value(moto_s3: MotoS3) -> None:
    cfg = TargetConfig(kind="s3", name="s3", url="http://x/{key}", credentials={
        "access_key_id": "D4C_NOPE_KEY", "secret_access_key": "D4C_NOPE_SECRET"},
        options={"bucket": "bkt", "endpoint_url": moto_s3.endpoint})
    t = make_target(cfg, {"D4C_NOPE_SECRET": "nope-secret-value"})  # no call yet: the plan asks
    (err,) = t.missing_credentials()
    assert err.line() == ("target 's3': environment variable D4C_NOPE_KEY is not set (credential "
                          "'access_key_id') (hint: export D4C_NOPE_KEY, or name another variable "
                          "under credentials.access_key_id)")
    assert "nope-secret-value" not in err.line()


def test_state_objects_round_trip(moto_s3: MotoS3) -> None:
    t = _target(moto_s3, moto_s3.bucket())
    assert t.read_state("j.json") is None
    t.write_state("j.json", b"{}")
    t.write_state("j.json", b'{"a": 1}')  # the journal is the one mutable object
    assert t.read_state("j.json") == b'{"a": 1}'


def test_multipart_survives_throttling_and_lost_responses(moto_s3: MotoS3, tmp_path: Path) -> None:
    """503/429 and resets before or after the server acted, on every kind of request: the
    upload converges on exactly our bytes (a lost complete answer ends in a 412 that our
    checksum resolves), with no multipart upload left behind."""
    proxy = FaultProxy(moto_s3.endpoint)
    kinds = ["503", "429", "reset-before", "reset-after"]
    completes: list[int] = []
    others: list[int] = []

    def plan(n: int, method: str, path: str) -> str | None:
        if method == "POST" and "uploadId=" in path:  # complete_multipart_upload
            completes.append(n)
            return "reset-after" if len(completes) == 1 else None  # its answer is lost once
        others.append(n)  # every other request gets the next fault in turn
        return kinds[(len(others) // 2) % 4] if len(others) % 2 == 0 else None

    proxy.plan = plan
    bucket = moto_s3.bucket()
    try:
        cfg = TargetConfig(kind="s3", name="s3", url="http://x/{key}", credentials={
            "access_key_id": "D4C_TEST_S3_KEY", "secret_access_key": "D4C_TEST_S3_SECRET"},
            options={"bucket": bucket, "endpoint_url": proxy.url, "multipart_chunksize": 5 * MiB,
                     "max_concurrency": 2, "max_attempts": 10})
        t = make_target(cfg, S3_ENV)
        path, sha, md5 = _file(tmp_path / "big", os.urandom(11 * MiB))
        t.upload("k/big", path, sha, md5)
        assert t.verify("k/big", sha)
    finally:
        proxy.close()
    assert {f.split()[0] for f in proxy.faults} == set(kinds) and len(completes) >= 2
    assert moto_s3.client().get_object(Bucket=bucket, Key="k/big")["Body"].read() == path.read_bytes()
    assert moto_s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_409_conditional_conflict_says_another_writer_raced_the_key(
        moto_s3: MotoS3, tmp_path: Path) -> None:
    proxy = FaultProxy(moto_s3.endpoint)
    proxy.plan = lambda n, method, path: "409" if method == "PUT" and path.endswith("/k/small") else None
    bucket = moto_s3.bucket()
    try:
        cfg = TargetConfig(kind="s3", name="s3", url="http://x/{key}", credentials={
            "access_key_id": "D4C_TEST_S3_KEY", "secret_access_key": "D4C_TEST_S3_SECRET"},
            options={"bucket": bucket, "endpoint_url": proxy.url, "max_attempts": 1})
        t = make_target(cfg, S3_ENV)
        path, sha, md5 = _file(tmp_path / "small", b"x" * 1000)
        with pytest.raises(D4CError) as exc:
            t.upload("k/small", path, sha, md5)
    finally:
        proxy.close()
    line = exc.value.line()
    assert f"s3://{bucket}/k/small met another writer's conditional write" in line and "409" in line
    assert "rerun `d4c release`" in line and "\n" not in line


def test_parts_stream_from_the_file_and_memory_does_not_grow_with_them(tmp_path: Path) -> None:
    """Three 5 MiB parts in flight at once, then a single-part PUT: no part and no file is ever
    held whole in Python memory. moto runs in a process of its own here, so only the client's allocations are traced."""
    import socket
    import subprocess
    import sys
    import time
    import tracemalloc

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cfg = TargetConfig(kind="s3", name="s3", url="http://x/{key}", credentials={
            "access_key_id": "D4C_TEST_S3_KEY", "secret_access_key": "D4C_TEST_S3_SECRET"},
            options={"bucket": "bkt-mem", "endpoint_url": f"http://127.0.0.1:{port}",
                     "multipart_chunksize": 5 * MiB, "max_concurrency": 3})
        t = make_target(cfg, S3_ENV)
        assert isinstance(t, S3Target)
        t.client.create_bucket(Bucket="bkt-mem")
        def peak_of_upload(key: str, path: Path, sha: str, md5: str) -> int:
            tracemalloc.start()
            try:
                t.upload(key, path, sha, md5)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        path, sha, md5 = _file(tmp_path / "big.bin", os.urandom(15 * MiB))
        peak = peak_of_upload("k/big", path, sha, md5)
        assert peak < 4 * MiB, peak  # reading whole parts would be >= 15 MiB
        assert t._read_hash("k/big") == sha  # the bytes the server holds are ours
        # a file of one chunk goes up in one PUT, streamed too (whatever multipart_chunksize says)
        one, osha, omd5 = _file(tmp_path / "one.bin", os.urandom(5 * MiB))
        peak = peak_of_upload("k/one", one, osha, omd5)
        assert peak < 4 * MiB, peak  # reading the file whole would be >= 5 MiB
        assert t._read_hash("k/one") == osha and t.verify("k/one", osha)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_writes_own_checksum_answer_spares_one_head(moto_s3: MotoS3, tmp_path: Path) -> None:
    t = _target(moto_s3, moto_s3.bucket())
    heads: list[str] = []
    t.client.meta.events.register("before-call.s3.HeadObject", lambda **kw: heads.append("HEAD"))
    path, sha, md5 = _file(tmp_path / "f", os.urandom(100))
    t.upload("k/f", path, sha, md5)
    assert t.verify("k/f", sha) and heads == []  # the PUT's answer carried the full-object SHA-256
    assert t.verify("k/f", sha) and heads == ["HEAD"]  # only once: later checks ask the server
    assert t.exists("k/f", sha) and t.verify("k/f", sha) and heads == ["HEAD"] * 2  # the look's HEAD
    assert t.verify("k/f", sha) and heads == ["HEAD"] * 3  # ... proves the one verify after it
    assert not t.verify("k/f", "0" * 64)
    # the plan's look proves nothing for later: replaced between plan and upload step, the
    # verify there must see the other bytes (not take the plan's stale proof)
    assert t.look("k/f", sha) == "present"
    other = os.urandom(100)
    moto_s3.client().put_object(Bucket=t.bucket, Key="k/f", Body=other,
                                Metadata={"sha256": hashlib.sha256(other).hexdigest()})
    assert not t.verify("k/f", sha)
    # a multipart complete whose answer has no composite (moto's) proves nothing: verify HEADs
    big, bsha, bmd5 = _file(tmp_path / "big", os.urandom(11 * MiB))
    t2 = _target(moto_s3, t.bucket, multipart_chunksize=5 * MiB)
    t2.client.meta.events.register("before-call.s3.HeadObject", lambda **kw: heads.append("HEAD2"))
    t2.upload("k/big", big, bsha, bmd5)
    assert t2.verify("k/big", bsha) and heads[-1] == "HEAD2"


def test_one_listing_decides_absent_keys_and_a_crowded_prefix_is_left_to_heads(moto_s3: MotoS3) -> None:
    t = _target(moto_s3, moto_s3.bucket())
    for key in [f"c/{i:02d}" for i in range(10)] + ["d/a"]:
        t.client.put_object(Bucket=t.bucket, Key=key, Body=b"x")
    lists: list[str] = []
    t.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: lists.append("LIST"))
    wanted = [f"c/{i:02d}" for i in range(10)] + ["c/zz", "c/0a"]
    assert t.listed("c/", wanted) == {k: k != "c/zz" and k != "c/0a" for k in wanted}
    assert lists == ["LIST"]  # one page decides them all, present or absent
    t.list_page = 3  # pages of 3 keys: 4 pages for 10 keys, each deciding 2 or more
    assert t.listed("c/", wanted) == {k: k != "c/zz" and k != "c/0a" for k in wanted}
    assert len(lists) == 1 + 4
    # wanted keys far apart in a crowded prefix: a page that decides one stops the listing
    assert t.listed("c/", ["c/00", "c/07"]) == {"c/00": True} and len(lists) == 1 + 4 + 1
    assert t.listed("d/", ["d/a", "d/b"]) == {"d/a": True, "d/b": False}


@pytest.mark.parametrize("change", ["truncate", "rewrite", "append"])
def test_a_file_changed_during_its_single_put_is_refused_at_once(
        moto_s3: MotoS3, tmp_path: Path, change: str) -> None:
    """Another process rewrites the file after botocore set the Content-Length: cut short, the
    PUT stops at once (before: http.client sent fewer bytes and waited out the 120 s read
    timeout per attempt, then moto kept the short object as 'verified'); bytes rewritten in
    place are refused (moto does not check ChecksumSHA256); bytes appended are not sent, and
    the changed file is refused too."""
    t = _target(moto_s3, moto_s3.bucket())
    data = os.urandom(2 * MiB)
    path, sha, md5 = _file(tmp_path / "f", data)

    def meddle(**kw: object) -> None:
        with path.open("r+b") as fh:
            if change == "truncate":
                fh.truncate(MiB)
            elif change == "rewrite":
                fh.seek(100)
                fh.write(b"\0" * 10)
            else:
                fh.seek(0, 2)
                fh.write(b"more")

    t.client.meta.events.register("before-send.s3.PutObject", meddle)
    # our body's own error, not the read timeout a short body would wait out on every attempt
    with pytest.raises(D4CError, match="shrank|changed") as err:
        t.upload("k/f", path, sha, md5)
    assert str(path) in err.value.line()
    assert "k/f" not in t._proven
    if change == "append":  # exactly the bytes we hashed went up
        assert moto_s3.client().get_object(Bucket=t.bucket, Key="k/f")["Body"].read() == data


def test_a_single_put_retried_after_a_reset_resends_every_byte_and_an_empty_file_goes_up(
        moto_s3: MotoS3, tmp_path: Path) -> None:
    proxy = FaultProxy(moto_s3.endpoint)
    puts: list[int] = []

    def plan(n: int, method: str, path: str) -> str | None:
        if method == "PUT":
            puts.append(n)
            return {1: "reset-before", 2: "503"}.get(len(puts))  # lost, then throttled
        return None

    proxy.plan = plan
    bucket = moto_s3.bucket()
    try:
        cfg = TargetConfig(kind="s3", name="s3", url="http://x/{key}", credentials={
            "access_key_id": "D4C_TEST_S3_KEY", "secret_access_key": "D4C_TEST_S3_SECRET"},
            options={"bucket": bucket, "endpoint_url": proxy.url})
        t = make_target(cfg, S3_ENV)
        path, sha, md5 = _file(tmp_path / "f", os.urandom(3 * MiB + 7))
        t.upload("k/f", path, sha, md5)
        assert t.verify("k/f", sha) and len(puts) == 3
        empty, esha, emd5 = _file(tmp_path / "e", b"")
        t.upload("k/e", empty, esha, emd5)
        assert t.exists("k/e", esha)
    finally:
        proxy.close()
    assert moto_s3.client().get_object(Bucket=bucket, Key="k/f")["Body"].read() == path.read_bytes()
    assert moto_s3.client().get_object(Bucket=bucket, Key="k/e")["Body"].read() == b""


def test_a_hostile_listing_ends_fast_and_never_makes_an_unlisted_key_present(tmp_path: Path) -> None:
    """A real HTTP server answering ListObjectsV2 with lies: the same truncated page whatever
    start-after says (a loop), a truncated page with no token, keys outside the prefix and
    unsorted, a Contents entry with no Key, an empty truncated page. listed() stays bounded,
    raises nothing, and says True only of keys the page named (the rest meet HEAD or the
    conditional PUT)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pages = {
        "loop": "<IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken>"
                "<Contents><Key>p/b</Key></Contents><Contents><Key>p/a</Key></Contents>",
        "notoken": "<IsTruncated>true</IsTruncated><Contents><Key>p/c</Key></Contents>",
        "outside": "<IsTruncated>true</IsTruncated><Contents><Key>zzz/other</Key></Contents>"
                   "<Contents><Key>p/a</Key></Contents>",
        "nokey": "<IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents>"
                 "<Contents><Key>p/a</Key></Contents>",
        "empty": "<IsTruncated>true</IsTruncated>",
    }
    mode, seen = [""], [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            seen[0] += 1
            body = ('<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
                    'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>'
                    f'<MaxKeys>1000</MaxKeys>{pages[mode[0]]}</ListBucketResult>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = TargetConfig(kind="s3", name="s3", url="http://x/{key}", credentials={
            "access_key_id": "D4C_TEST_S3_KEY", "secret_access_key": "D4C_TEST_S3_SECRET"},
            options={"bucket": "b", "endpoint_url": f"http://127.0.0.1:{srv.server_address[1]}",
                     "max_attempts": 1})
        t = make_target(cfg, S3_ENV)
        assert isinstance(t, S3Target)
        wanted = [f"p/{c}" for c in "abcdefgh"]
        for name in pages:
            mode[0], seen[0] = name, 0
            found = t.listed("p/", wanted)
            assert seen[0] <= len(wanted), (name, seen[0])
            assert {k for k, there in found.items() if there} <= {"p/a", "p/b", "p/c"}, (name, found)
            assert set(found) <= set(wanted), (name, found)
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_file_cut_short_while_its_parts_go_up_stops_at_once_and_leaves_no_upload(
        moto_s3: MotoS3, tmp_path: Path) -> None:
    """The second part's range is cut off after its checksum was taken: the part stops at
    once (a short body would wait out the read timeout on every attempt), the multipart
    upload is aborted, the key stays absent."""
    t = _target(moto_s3, moto_s3.bucket(), multipart_chunksize=5 * MiB, max_concurrency=1)
    path, sha, md5 = _file(tmp_path / "big", os.urandom(11 * MiB))
    parts: list[int] = []

    def cut(**kw: object) -> None:
        parts.append(1)
        if len(parts) == 2:
            with path.open("r+b") as fh:
                fh.truncate(6 * MiB)

    t.client.meta.events.register("before-send.s3.UploadPart", cut)
    # our body's own error, not the read timeout a short part would wait out on every attempt
    with pytest.raises(D4CError, match="shrank while it was uploaded"):
        t.upload("k/big", path, sha, md5)
    assert moto_s3.client().list_multipart_uploads(Bucket=t.bucket).get("Uploads", []) == []
    assert "k/big" not in moto_s3.keys(t.bucket)
