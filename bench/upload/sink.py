"""A client-bound S3 sink for bench/upload: it speaks enough S3 over HTTP/1.1 for an upload
(HEAD bucket/object, PUT object, multipart create/part/complete/abort, DELETE) and does
almost no work: bodies are read into one reused buffer and dropped, nothing is hashed.

It keeps what a client needs to look before and check after: per key, the size, the
`x-amz-meta-*` headers and the checksum headers the client sent (echoed back, trusted:
the sink measures the client, not the server). A multipart upload's composite checksum is
the part checksums' own algorithm over their concatenated binary values (S3's rule), which
costs microseconds. `If-None-Match: *` on an existing key answers 412, as S3 does.

    python bench/upload/sink.py --port 0   # prints "listening <port>" once ready
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import re
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BLOCK = 1 << 20
_IDS = itertools.count(1)
_LOCK = threading.Lock()
OBJECTS: dict[str, dict[str, Any]] = {}  # "bucket/key" -> {"size", "headers"}
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

    def _drain(self) -> int:
        view, got = memoryview(bytearray(BLOCK)), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while (size := int(self.rfile.readline().split(b";")[0], 16)):
                self.rfile.read(size + 2)
                got += size
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return got
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            n = self.rfile.readinto(view[:min(left, BLOCK)])
            if not n:
                break
            left -= n
            got += n
        return got

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
        return url.path.lstrip("/"), parse_qs(url.query, keep_blank_values=True)

    def do_HEAD(self) -> None:
        where, _ = self._where()
        if "/" not in where:
            return self._reply(200)  # every bucket exists
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
        size = self._drain()
        sums = {k: v for k, v in self.headers.items() if k.lower() in CHECKSUMS}
        if "uploadId" in q:
            UPLOADS[q["uploadId"][0]]["parts"][int(q["partNumber"][0])] = (sums, size)
            return self._reply(200, headers={"ETag": '"part"', **sums})
        if self.headers.get("If-None-Match") == "*" and where in OBJECTS:
            return self._reply(412, b"<Error><Code>PreconditionFailed</Code></Error>")
        keep = {k.lower(): v for k, v in self.headers.items()
                if k.lower().startswith("x-amz-meta-") or k.lower() in CHECKSUMS}
        OBJECTS[where] = {"size": size, "headers": keep}
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
        OBJECTS[where] = {"size": sum(up["parts"][n][1] for n in numbers), "headers": headers}
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
        self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>")  # the sink keeps no bytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Sink)
    httpd.daemon_threads = True
    print(f"listening {httpd.server_address[1]}", flush=True)
    httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
