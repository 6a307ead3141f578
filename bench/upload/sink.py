"""A client-bound S3 sink for bench/upload and bench/release: it speaks enough S3 over
HTTP/1.1 for an upload and a release (HEAD bucket/object, PUT bucket/policy/object, multipart
create/part/complete/abort, DELETE, ListObjectsV2 with prefix, start-after and continuation,
GET with Range) and does almost no work: bodies are read into one reused buffer and dropped,
nothing is hashed, no signature is checked (every bucket exists); an unsigned read is
refused (403) unless the bucket's policy opens the key's prefix to "*". With
`--keep` it keeps the bodies in memory (bench/release: small objects, a journal to read back);
without, a GET of an object answers 404.

It keeps what a client needs to look before and check after: per key, the size, the
`x-amz-meta-*` headers and the checksum headers the client sent (echoed back, trusted:
the sink measures the client, not the server). A multipart upload's composite checksum is
the part checksums' own algorithm over their concatenated binary values (S3's rule), which
costs microseconds. `If-None-Match: *` on an existing key answers 412, as S3 does.

    python bench/upload/sink.py --port 0 [--keep]   # prints "listening <port>" once ready
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import re
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.sax.saxutils import escape

BLOCK = 1 << 20
_IDS = itertools.count(1)
_LOCK = threading.Lock()
OBJECTS: dict[str, dict[str, Any]] = {}  # "bucket/key" -> {"size", "headers", "body" (--keep)}
KEEP = False  # --keep: bodies are kept (in memory) for GET
PUBLIC: dict[str, list[str]] = {}  # bucket -> key prefixes its policy opens to anonymous reads
UPLOADS: dict[str, dict[str, Any]] = {}  # upload id -> {"headers", "parts": {n: {header: b64}}}
XML_NAMES = {"x-amz-checksum-crc32": "ChecksumCRC32", "x-amz-checksum-crc32c": "ChecksumCRC32C",
             "x-amz-checksum-sha256": "ChecksumSHA256", "x-amz-checksum-sha1": "ChecksumSHA1",
             "x-amz-checksum-crc64nvme": "ChecksumCRC64NVME"}
CHECKSUMS = tuple(XML_NAMES)


def _composite(name: str, values: list[str]) -> str:
    raw = b"".join(base64.b64decode(v) for v in values)
    if name.endswith("crc32"):
        digest = zlib.crc32(raw).to_bytes(4, "big")
    elif name.endswith("sha256"):
        digest = hashlib.sha256(raw).digest()
    else:
        return ""  # other algorithms: no composite (the client then reads back or trusts)
    return f"{base64.b64encode(digest).decode()}-{len(values)}"


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return None

    def _drain(self) -> tuple[int, bytes | None]:
        """(size, the body when --keep) of the request's body, read in blocks."""
        view, got = memoryview(bytearray(BLOCK)), 0
        kept = bytearray() if KEEP else None
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (size := int(self.rfile.readline().split(b";")[0], 16)):
                chunk = self.rfile.read(size + 2)
                if kept is not None:
                    kept += chunk[:size]
                got += size
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return got, None if kept is None else bytes(kept)
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            n = self.rfile.readinto(view[:min(left, BLOCK)])
            if not n:
                break
            if kept is not None:
                kept += view[:n]
            left -= n
            got += n
        return got, None if kept is None else bytes(kept)

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _where(self) -> tuple[str, dict[str, list[str]]]:
        url = urlsplit(self.path)
        return unquote(url.path.lstrip("/")), parse_qs(url.query, keep_blank_values=True)

    def _refused(self, where: str) -> bool:
        """An unsigned read of a key its bucket's policy does not open (S3 answers 403); signed
        requests are trusted (the sink checks no signature)."""
        if "Authorization" in self.headers or "X-Amz-Signature" in self.path:
            return False
        bucket, _, key = where.partition("/")
        if any(key.startswith(p) for p in PUBLIC.get(bucket, [])):
            return False
        self._reply(403, b"<Error><Code>AccessDenied</Code></Error>")
        return True

    def do_HEAD(self) -> None:
        where, _ = self._where()
        if "/" not in where:
            return self._reply(200)  # every bucket exists
        if self._refused(where):
            return None
        obj = OBJECTS.get(where)
        if obj is None:
            return self._reply(404)
        self.send_response(200)
        for k, v in obj["headers"].items():
            self.send_header(k, v)
        self.send_header("ETag", '"sink"')
        self.send_header("Content-Length", str(obj["size"]))
        self.end_headers()

    def do_PUT(self) -> None:
        where, q = self._where()
        if "/" not in where:  # create bucket, or put its policy
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if "policy" in q:
                PUBLIC[where] = [r.split("/", 1)[1].rstrip("*") for st in json.loads(raw)["Statement"]
                                 for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
                                 if st.get("Effect") == "Allow" and st.get("Principal") == "*"]
            return self._reply(200)
        size, body = self._drain()
        sums = {k: v for k, v in self.headers.items() if k.lower() in CHECKSUMS}
        if "uploadId" in q:
            UPLOADS[q["uploadId"][0]]["parts"][int(q["partNumber"][0])] = (sums, size, body)
            return self._reply(200, headers={"ETag": '"part"', **sums})
        if self.headers.get("If-None-Match") == "*" and where in OBJECTS:
            return self._reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
        keep = {k.lower(): v for k, v in self.headers.items()
                if k.lower().startswith("x-amz-meta-") or k.lower() in CHECKSUMS}
        OBJECTS[where] = {"size": size, "headers": keep, "body": body}
        self._reply(200, headers={"ETag": '"sink"', **sums})

    def do_POST(self) -> None:
        where, q = self._where()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        bucket, _, key = where.partition("/")
        if "uploads" in q:
            with _LOCK:
                uid = f"u{next(_IDS)}"
            meta = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")}
            UPLOADS[uid] = {"headers": meta, "parts": {}}
            xml = (f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                   f"<UploadId>{uid}</UploadId></InitiateMultipartUploadResult>")
            return self._reply(200, xml.encode(), {"Content-Type": "application/xml"})
        up = UPLOADS.get(q.get("uploadId", [""])[0])
        if up is None:
            return self._reply(404, b"<Error><Code>NoSuchUpload</Code></Error>")
        if self.headers.get("If-None-Match") == "*" and where in OBJECTS:
            return self._reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
        numbers = [int(n) for n in re.findall(rb"<PartNumber>(\d+)</PartNumber>", body)]
        parts = [up["parts"][n][0] for n in numbers]
        headers = dict(up["headers"])
        for name in CHECKSUMS:
            values = [v for p in parts for h, v in p.items() if h.lower() == name]
            if values and len(values) == len(parts) and (comp := _composite(name, values)):
                headers[name] = comp
        bodies = [up["parts"][n][2] for n in numbers]
        OBJECTS[where] = {"size": sum(up["parts"][n][1] for n in numbers), "headers": headers,
                          "body": None if None in bodies else b"".join(bodies)}
        del UPLOADS[q["uploadId"][0]]
        tags = "".join(f"<{XML_NAMES[n]}>{v}</{XML_NAMES[n]}>" for n, v in headers.items()
                       if n in XML_NAMES)
        xml = (f"<CompleteMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{key}</Key>"
               f"<ETag>\"sink-{len(parts)}\"</ETag>{tags}</CompleteMultipartUploadResult>")
        self._reply(200, xml.encode(), {"Content-Type": "application/xml"})

    def do_DELETE(self) -> None:
        where, q = self._where()
        if "uploadId" in q:
            UPLOADS.pop(q["uploadId"][0], None)
        else:
            OBJECTS.pop(where, None)
        self._reply(204)

    def do_GET(self) -> None:
        where, q = self._where()
        if "/" not in where:
            return self._list(where, q)
        if self._refused(where):
            return None
        obj = OBJECTS.get(where)
        if obj is None or obj.get("body") is None:  # without --keep the sink keeps no bytes
            return self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
        body, status = obj["body"], 200
        headers = {**obj["headers"], "ETag": '"sink"', "Accept-Ranges": "bytes"}
        if (m := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))) and len(body):
            start, end = int(m[1]), min(int(m[2] or len(body) - 1), len(body) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            body, status = body[start:end + 1], 206
        self._reply(status, body, headers)

    def _list(self, bucket: str, q: dict[str, list[str]]) -> None:
        """ListObjectsV2: keys after start-after (or the continuation token) under prefix."""
        arg = {k: v[0] for k, v in q.items()}
        prefix, size = arg.get("prefix", ""), int(arg.get("max-keys", 1000))
        after = arg.get("continuation-token") or arg.get("start-after", "")
        keys = sorted(k.split("/", 1)[1] for k in list(OBJECTS) if k.startswith(f"{bucket}/{prefix}"))
        keys = [k for k in keys if k > after]
        page, more = keys[:size], len(keys) > size
        url = arg.get("encoding-type") == "url"
        items = "".join(
            f"<Contents><Key>{escape(quote(k) if url else k)}</Key>"
            f"<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;sink&quot;</ETag>"
            f"<Size>{OBJECTS[f'{bucket}/{k}']['size']}</Size><StorageClass>STANDARD</StorageClass>"
            "</Contents>" for k in page)
        token = f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>" if more else ""
        xml = (f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>{bucket}</Name>'
               f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount><MaxKeys>{size}</MaxKeys>"
               + ("<EncodingType>url</EncodingType>" if url else "")
               + f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{token}{items}</ListBucketResult>")
        self._reply(200, xml.encode(), {"Content-Type": "application/xml"})


class Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up: no news
            super().handle_error(request, client_address)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep bodies in memory, for GET")
    args = ap.parse_args()
    global KEEP
    KEEP = args.keep
    httpd = Server(("127.0.0.1", args.port), Sink)
    httpd.daemon_threads = True
    print(f"listening {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
