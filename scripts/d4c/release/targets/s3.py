"""`s3`: any S3-compatible store via boto3 (Source Cooperative, Data for Canada's store, MinIO...).

Integrity: our sha256 (and size) ride in object metadata; single-part uploads also send
ChecksumSHA256 (the server checks the bytes), multipart uploads send a checksum per part
(CRC32 by default, SHA-256 on request) and we compare the server's composite with ours. Immutability: writes carry
If-None-Match: * so an existing key is never replaced; on PreconditionFailed the existing
object's checksum decides: ours = already done, different = an error naming the key.

The data path stays on boto3 rather than obstore: obstore 0.12.1 (the locked one) turns a
put with any mode but overwrite into one single-part request holding the whole file in
memory, which breaks both If-None-Match on large files and the memory bound. Costs taken off
boto3's hot path (bench/upload, client-bound sink, measured with perf): parts stream from
the file (a seekable range of it that refuses to come up short), so memory does not grow with part size or
concurrency; the part checksum is one extra read of 1 MiB blocks from the page cache,
CRC32'd by ISA-L (isal, 4x zlib's speed here, the same values); and the payload is not
SHA-256-signed (botocore signs it over plain http only; over https it already sends
UNSIGNED-PAYLOAD when a checksum header is present, which every request of ours carries).
What is left is the kernel's copies (about 60% of the upload's CPU) and botocore's ~3 ms
per request.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from d4c.errors import D4CError
from d4c.release.targets.base import BaseTarget, ReleaseContext, TargetConfig
from d4c.release.targets.s3_body import FileBody, MiB, b64, part_digest, range_digest

log = logging.getLogger(__name__)
# Measured on moto_server (bench/upload): 16 MiB x 8 beat 8 MiB x 10 (boto3), 32-64 MiB x 4;
# fewer requests cut per-request overhead, 8 in flight keep both cores busy.
DEFAULT_CHUNK = 16 * MiB
DEFAULT_CONCURRENCY = 8
MAX_PARTS = 10_000
DEFAULT_PARALLEL_FILES = 8  # files of one release at once (bench/release)


_SESSION: list[boto3.session.Session] = []
_SESSION_LOCK = threading.Lock()


def _session() -> boto3.session.Session:
    # One session per process: each new one re-parses botocore's large S3 model (~10 ms+).
    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        return _SESSION[0]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Target(BaseTarget):
    kind = "s3"
    REPLACES = True
    OPTIONAL = frozenset({"session_token"})

    def roles(self) -> frozenset[str]:
        return frozenset({"access_key_id", "secret_access_key", "session_token"})

    def credential_vars(self) -> dict[str, str]:
        named = dict(self.config.credentials)
        if "access_key_id" in named or "secret_access_key" in named:  # one named: both needed
            named.setdefault("access_key_id", "AWS_ACCESS_KEY_ID")
            named.setdefault("secret_access_key", "AWS_SECRET_ACCESS_KEY")
        return named

    def __init__(self, config: TargetConfig, environ: Mapping[str, str] | None = None):
        super().__init__(config, environ)
        opts = config.options
        self.bucket = str(opts["bucket"])
        self.chunk = int(opts.get("multipart_chunksize", DEFAULT_CHUNK))
        self.concurrency = int(opts.get("max_concurrency", DEFAULT_CONCURRENCY))
        self.upload_slots = int(opts.get("parallel_uploads", DEFAULT_PARALLEL_FILES))
        self.conditional = bool(opts.get("conditional_writes", True))
        # CRC32 per part (what AWS SDKs send by default) guards each part in transit at a
        # fraction of SHA-256's CPU (bench/upload: SHA-256 parts ~20-30% slower on 2 cores);
        # the object's identity is our sha256 in metadata, and single PUTs carry it as
        # a full-object ChecksumSHA256 the server checks.
        self.part_checksum = str(opts.get("part_checksum", "CRC32")).upper()
        self._composite: dict[str, str] = {}  # key -> composite checksum we proved at upload
        # key -> sha256 whose checksum the server's own answer to our write (or the HEAD of
        # exists() in the same step, a 412's look) confirmed: the next verify of that key takes
        # it (once) instead of a HEAD that would compare the very same server checksum again.
        self._proven: dict[str, str] = {}
        self.guards_create = self.conditional  # If-None-Match: the write itself looks first
        self.list_page = 1000  # ListObjectsV2's most keys per page (S3's cap)
        creds: dict[str, Any] = {}
        if self.credential_vars() and not self.missing_credentials():
            # None named: boto3's own chain (instance role, ~/.aws). Some unset: the plan names
            # them and stops before this client makes any call.
            creds = {"aws_access_key_id": self.credential("access_key_id", required=False),
                     "aws_secret_access_key": self.credential("secret_access_key", required=False),
                     "aws_session_token": self.credential("session_token", required=False)}
        self.client = _session().client(
            "s3", endpoint_url=opts.get("endpoint_url"), region_name=opts.get("region", "us-east-1"),
            config=Config(
                # every request carries a checksum header (see the module docstring)
                s3={"addressing_style": opts.get("addressing_style", "path"),
                    "payload_signing_enabled": False},
                retries={"mode": "standard", "max_attempts": int(opts.get("max_attempts", 8))},
                connect_timeout=10, read_timeout=120,
                max_pool_connections=max(10, self.concurrency + 2, self.upload_slots + 2),
                request_checksum_calculation="when_required",  # we send SHA-256 ourselves
                response_checksum_validation="when_required",
            ),
            **creds,
        )

    def _fail(self, what: str, key: str, exc: Exception) -> D4CError:
        detail = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return D4CError(f"target {self.name!r}: {what} s3://{self.bucket}/{key} failed ({detail})",
                        hint="check the endpoint, bucket and credentials; rerun resumes")

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"))
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail("HEAD", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("HEAD", key, exc) from None

    def probe(self, ctx: ReleaseContext) -> list[str]:
        """HEAD the bucket: it exists, the endpoint answers, these credentials reach it."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("HEAD", "", exc) from None
        return []

    def _state(self, key: str, sha256: str) -> str:
        """absent | present (our bytes, proven) | damaged (our sha256 in metadata, other bytes)."""
        head = self._head(key)
        if head is None:
            return "absent"
        theirs = head.get("Metadata", {}).get("sha256")
        if theirs != sha256:
            raise D4CError(
                f"target {self.name!r}: s3://{self.bucket}/{key} exists with a different sha256 "
                f"({theirs or 'none recorded'})",
                hint="published keys are immutable: bump the version, or delete a damaged copy")
        if not self.verify(key, sha256, head):
            return "damaged"
        self._proven[key] = sha256  # this HEAD proved our bytes: the next verify takes it, once
        return "present"

    def exists(self, key: str, sha256: str) -> bool:
        return self._state(key, sha256) == "present"

    def look(self, key: str, sha256: str) -> str:
        """The plan's look. Its HEAD proves our bytes at plan time, not at the upload step
        that prepare and the torrents may reach minutes later: the verify there asks again.
        A damaged copy is the plan's problem, found before any write: the conditional PUT
        could never replace it."""
        state = self._state(key, sha256)
        self._proven.pop(key, None)
        if state == "damaged":
            raise D4CError(
                f"target {self.name!r}: s3://{self.bucket}/{key} has our sha256 in its metadata "
                "but not our bytes (a damaged copy)",
                hint="`d4c mirrors repair`, or delete that key, then rerun")
        return state

    def upload(self, key: str, path: Path, sha256: str, md5: str) -> None:
        before = path.stat()
        size = before.st_size
        meta = {"sha256": sha256, "md5": md5, "size": str(size)}
        cond = {"IfNoneMatch": "*"} if self.conditional else {}
        try:
            if size <= self.chunk:
                ours = b64(bytes.fromhex(sha256))
                # streamed from the file, as parts are: memory stays flat at any chunk setting
                body = FileBody(path, size)
                try:
                    done = self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                                  Metadata=meta, ChecksumAlgorithm="SHA256",
                                                  ChecksumSHA256=ours,
                                                  ContentMD5=b64(bytes.fromhex(md5)), **cond)
                finally:
                    body.close()
                after = path.stat()  # rewritten meanwhile: a server that checks no digest kept it
                if (after.st_size, after.st_mtime_ns) != (size, before.st_mtime_ns):
                    raise D4CError(f"{path} changed while it was uploaded to s3://{self.bucket}/{key}",
                                   hint="rebuild; if that key now holds other bytes, delete it; rerun")
                if str(done.get("ChecksumSHA256") or "").split("-")[0] == ours:
                    self._proven[key] = sha256
            else:
                self._multipart(key, path, size, meta, cond)
        except ClientError as exc:
            if _code(exc) in ("ConditionalRequestConflict", "409"):  # S3's answer to a tie
                raise D4CError(f"target {self.name!r}: upload to s3://{self.bucket}/{key} met another "
                               "writer's conditional write of that key in flight (409 "
                               "ConditionalRequestConflict); nothing of ours was kept there",
                               hint="rerun `d4c release`: it looks at what that key holds then") from None
            if _code(exc) not in ("PreconditionFailed", "412"):
                raise self._fail("upload to", key, exc) from None
            if not self.exists(key, sha256):  # our sha256 on other bytes, or gone since
                raise D4CError(f"target {self.name!r}: s3://{self.bucket}/{key} is there (412) but "
                               "does not hold our bytes: a damaged copy, or removed just now",
                               hint="`d4c mirrors repair` or a delete of that key, then rerun") from None
            log.info("%s: %s already holds our bytes", self.name, key)
        except BotoCoreError as exc:
            inner = getattr(exc, "kwargs", {}).get("error")  # our body's own refusal, wrapped
            raise inner if isinstance(inner, D4CError) else self._fail("upload to", key, exc) from None

    def _multipart(self, key: str, path: Path, size: int, meta: dict[str, str],
                   cond: dict[str, str]) -> None:
        """Parts in parallel, each checksummed; the server's composite must equal ours."""
        chunk = max(self.chunk, -(-size // MAX_PARTS))
        count = -(-size // chunk)
        algo, field = self.part_checksum, f"Checksum{self.part_checksum}"
        up = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=meta,
                                                 ChecksumAlgorithm=algo)
        uid = up["UploadId"]

        def part(n: int) -> tuple[dict[str, Any], bytes]:
            start = (n - 1) * chunk
            length = min(chunk, size - start)
            digest = range_digest(algo, path, start, length)
            # streamed from its own handle: parallel reads, memory bounded by the send buffer
            body = FileBody(path, length, start)
            try:
                r = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=uid, PartNumber=n,
                                            Body=body, **{field: b64(digest)})
            finally:
                body.close()
            return {"PartNumber": n, "ETag": r["ETag"], field: b64(digest)}, digest

        try:
            with ThreadPoolExecutor(self.concurrency) as pool:
                results = list(pool.map(part, range(1, count + 1)))
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=uid,
                MultipartUpload={"Parts": [p for p, _ in results]}, **cond)
        except BaseException:
            try:  # leave no orphaned parts behind (they cost money on real stores)
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=uid)
            except (ClientError, BotoCoreError):
                pass
            raise
        # S3's composite: the same checksum over the concatenated binary part checksums
        ours = b64(part_digest(algo, b"".join(d for _, d in results)))
        if done.get(field) and done[field].split("-")[0] != ours:
            raise D4CError(f"target {self.name!r}: s3://{self.bucket}/{key}: composite checksum "
                           f"mismatch after upload", hint="rerun; the object will be re-checked")
        self._composite[key] = ours
        if done.get(field):
            self._proven[key] = meta["sha256"]

    def verify(self, key: str, sha256: str, head: dict[str, Any] | None = None) -> bool:
        if head is None and self._proven.pop(key, None) == sha256:
            return True  # the write's own answer carried the server's checksum of our bytes
        head = head or self._head(key)
        if head is None or head.get("Metadata", {}).get("sha256") != sha256:
            return False
        if str(head.get("ContentLength")) != head["Metadata"].get("size", str(head.get("ContentLength"))):
            return False
        # S3 writes a composite as "<b64>-<parts>"; some servers (moto) omit the suffix.
        server = str(head.get("ChecksumSHA256") or "").split("-")[0]
        if server and server == b64(bytes.fromhex(sha256)):  # full-object SHA-256: decisive
            return True
        known = self._composite.get(key)  # the parts we hashed and sent (this run or journal)
        if known and any(str(head.get(f"Checksum{a}") or "").split("-")[0] == known
                         for a in ("CRC32", "SHA256")):
            return True
        return self._read_hash(key) == sha256  # no usable server checksum: read it back

    def replace(self, key: str, path: Path, sha256: str, md5: str) -> None:
        """Remove the damaged object (`upload` never overwrites a key), put ours through
        `upload` (If-None-Match, the server-checked SHA-256 or part checksums), verify."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("remove the damaged copy at", key, exc) from None
        self._composite.pop(key, None)
        self.upload(key, path, sha256, md5)
        self.replaced(key, sha256)

    def _read_hash(self, key: str) -> str:
        h = hashlib.sha256()
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            for block in body.iter_chunks(4 * MiB):
                h.update(block)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("read back", key, exc) from None
        return h.hexdigest()

    # The journal keeps the composites we proved at upload (orchestrator: recall/remembered),
    # so a rerun verifies a multipart object with one HEAD instead of reading it back.
    def recall(self, memo: dict[str, Any]) -> None:
        self._composite.update({str(k): str(v) for k, v in (memo.get("composites") or {}).items()})

    def remembered(self) -> dict[str, Any]:
        return {"composites": dict(sorted(self._composite.items()))}

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            keys.extend(str(obj["Key"]) for obj in page.get("Contents", []) if "Key" in obj)
        return keys

    def listed(self, prefix: str, keys: list[str]) -> dict[str, bool]:
        """Which of `keys` (all under `prefix`) exist, from ListObjectsV2 pages started at the
        first key not yet decided: one page decides every wanted key up to its last listed key
        (all of them once a page is not truncated). Keys a listing would cost more than a HEAD
        each (a crowded prefix, a page deciding fewer than 2) or cannot list (no
        s3:ListBucket) are left out, for the caller to HEAD. Reads only."""
        todo, at = sorted(set(keys)), ""
        out: dict[str, bool] = {}
        while todo:
            try:
                page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=self.list_page,
                                                   StartAfter=max(at, todo[0][:-1]))
            except (ClientError, BotoCoreError) as exc:
                log.info("%s: listing %s failed (%s): HEAD each key", self.name, prefix, exc)
                return out
            names = {str(o["Key"]) for o in page.get("Contents", []) if "Key" in o}  # a server's XML
            truncated = bool(page.get("IsTruncated"))
            if truncated and not names:
                return out
            at = max(names) if truncated else ""
            decided = [k for k in todo if not at or k <= at]  # str order = S3's UTF-8 byte order
            out.update({k: k in names for k in decided})
            todo = todo[len(decided):]
            if at and len(decided) < 2:
                break
        return out

    def delete_older_versions(self, dataset_id: str, keep_version: str) -> list[str]:
        prefix = self.listing_prefix(dataset_id)
        try:
            old = self.older_version_keys(self._keys(prefix), dataset_id, keep_version)
            for i in range(0, len(old), 1000):
                batch = [{"Key": k} for k in old[i:i + 1000]]
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("clean up", prefix, exc) from None
        return old

    def storage_uri(self, key: str) -> str | None:
        return f"s3://{self.bucket}/{key}"  # what S3 clients (and Portolan's alternates) use

    def read_state(self, key: str) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey"):
                return None
            raise self._fail("read", key, exc) from None
        except BotoCoreError as exc:
            raise self._fail("read", key, exc) from None

    def write_state(self, key: str, data: bytes, content_type: str = "application/json") -> None:
        try:  # the journal and the STAC tree are the mutable objects: a plain overwrite
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise self._fail("write", key, exc) from None
