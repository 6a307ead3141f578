"""The one canonical JSON form for everything d4c publishes (manifest, provenance, release
record, journal, catalog JSON, reports): sorted keys, 2-space indent, UTF-8 as is
(`ensure_ascii=False`), one trailing newline. Same document, same bytes, so a rerun
writes what the first run wrote and a digest of the bytes is a digest of the document.
"""
from __future__ import annotations

import json
from typing import Any


def dumps(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def encode(doc: Any) -> bytes:
    return dumps(doc).encode("utf-8")
