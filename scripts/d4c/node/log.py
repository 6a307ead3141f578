"""The public append-only check-in log: a folder, or an S3 prefix (`s3://bucket/prefix`).

Each entry is one signed check-in at `<date>/<sha256 of its bytes>.json`. Entries are only
ever created, never replaced: in a folder with O_EXCL, on S3 with a conditional create
(`If-None-Match: *`), so a bucket policy can grant writers `s3:PutObject` on the prefix
under the condition `s3:if-none-match` and nothing else. Names are content hashes, so an
entry that is already there holds the same bytes. S3 is read anonymously when there are
no credentials (a public bucket); the endpoint comes from `AWS_ENDPOINT_URL` as boto3 has it.

Everything read is untrusted: a name that is not `<date>/<64 hex>.json` is skipped, an
entry larger than MAX_ENTRY is refused from its listed size before a byte is read, and
the bytes must hash to the name (d4c.node.checkins checks the rest).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MAX_ENTRY = 16 << 20  # 10,000 held files are about 2 MB
NAME = re.compile(r"(\d{4}-\d{2}-\d{2})/([0-9a-f]{64})\.json")


@dataclass(frozen=True)
class Listed:
    name: str  # <date>/<sha256>.json
    size: int


class Log(Protocol):
    where: str

    def append(self, name: str, data: bytes) -> None: ...
    def names(self, since: str) -> list[Listed]: ...
    def read(self, name: str) -> bytes: ...


def entry_name(date: str, data: bytes) -> str:
    return f"{date}/{hashlib.sha256(data).hexdigest()}.json"


class FolderLog:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def append(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)  # fails if the name exists: create only, and never half-written
        except FileExistsError:
            pass  # the same name is the same bytes
        finally:
            tmp.unlink()

    def names(self, since: str) -> list[Listed]:
        if not self.root.is_dir():
            return []
        out = []
        for day in sorted(p for p in self.root.iterdir() if p.is_dir() and p.name >= since):
            for p in sorted(day.glob("*.json")):
                st = p.lstat()  # only regular files: a symlink, folder or FIFO here is not an entry
                if stat.S_ISREG(st.st_mode):
                    out.append(Listed(f"{day.name}/{p.name}", st.st_size))
        return out

    def read(self, name: str) -> bytes:
        with (self.root / name).open("rb") as fh:
            return fh.read(MAX_ENTRY + 1)


class S3Log:
    def __init__(self, url: str, client: Any = None) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.where = url
        self.s3 = client or _client()

    def append(self, name: str, data: bytes) -> None:
        from botocore.exceptions import ClientError

        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data,
                               ContentType="application/json", IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise

    def names(self, since: str) -> list[Listed]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix, StartAfter=self.prefix + since)
        return [Listed(o["Key"][len(self.prefix):], int(o["Size"]))
                for page in pages for o in page.get("Contents", [])]

    def read(self, name: str) -> bytes:
        got = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + name, Range=f"bytes=0-{MAX_ENTRY}")
        return bytes(got["Body"].read(MAX_ENTRY + 1))


def _client() -> Any:
    return _cached_client(os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("AWS_ACCESS_KEY_ID"))


@functools.lru_cache(maxsize=4)
def _cached_client(endpoint: str | None, key_id: str | None) -> Any:
    """One client per endpoint and identity: making one loads botocore's models (~0.5 s)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    session = boto3.session.Session()
    unsigned = session.get_credentials() is None  # a public log: read it anonymously
    return session.client("s3", config=Config(signature_version=UNSIGNED) if unsigned else None)


def open_log(where: str) -> Log:
    return S3Log(where) if where.startswith("s3://") else FolderLog(Path(where))
