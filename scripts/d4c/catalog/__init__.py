"""The STAC GeoParquet catalog: one item per released dataset version (docs/catalog.md)."""
from __future__ import annotations

from d4c.catalog.append import append_record
from d4c.catalog.build import build_catalog, metadata_from
from d4c.catalog.records import load_records

__all__ = ["append_record", "build_catalog", "load_records", "metadata_from"]
