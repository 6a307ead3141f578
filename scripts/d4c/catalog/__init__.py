"""The STAC GeoParquet catalog: one item per released dataset version (docs/catalog.md)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d4c.catalog.append import append_record
    from d4c.catalog.build import build_catalog, metadata_from
    from d4c.catalog.records import load_records

# Imported on first use: `d4c catalog build` needs neither the append's readers (DuckDB,
# stac-geoparquet) nor their second of imports.
_WHERE = {"append_record": "d4c.catalog.append", "build_catalog": "d4c.catalog.build",
          "metadata_from": "d4c.catalog.build", "load_records": "d4c.catalog.records"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["append_record", "build_catalog", "load_records", "metadata_from"]
