"""The GeoParquet `geo` and stac-geoparquet footer metadata, as stac-geoparquet 0.8.3 writes
them (`create_parquet_metadata` at its default schema version), held here so that a build
does not import stac-geoparquet (0.7 s: it imports pandas) to write two constant strings.
tests/test_catalog_parallel.py checks them against the library: a stac-geoparquet that
writes otherwise fails it, and these are updated with the lock.
"""
from __future__ import annotations

import json
from typing import Any

STAC_GEOPARQUET_VERSION = "1.0.0"  # the stac-geoparquet metadata's `version`
GEOPARQUET_VERSION = "1.1.0"  # stac-geoparquet's DEFAULT_PARQUET_SCHEMA_VERSION
# The CRS stac-geoparquet tags the geometry with (its WGS84_CRS_JSON, PROJJSON).
WGS84_CRS_JSON: dict[str, Any] = {'$schema': 'https://proj.org/schemas/v0.7/projjson.schema.json',
 'type': 'GeographicCRS',
 'name': 'WGS 84',
 'datum_ensemble': {'name': 'World Geodetic System 1984 ensemble',
                    'members': [{'name': 'World Geodetic System 1984 (Transit)',
                                 'id': {'authority': 'EPSG', 'code': 1166}},
                                {'name': 'World Geodetic System 1984 (G730)',
                                 'id': {'authority': 'EPSG', 'code': 1152}},
                                {'name': 'World Geodetic System 1984 (G873)',
                                 'id': {'authority': 'EPSG', 'code': 1153}},
                                {'name': 'World Geodetic System 1984 (G1150)',
                                 'id': {'authority': 'EPSG', 'code': 1154}},
                                {'name': 'World Geodetic System 1984 (G1674)',
                                 'id': {'authority': 'EPSG', 'code': 1155}},
                                {'name': 'World Geodetic System 1984 (G1762)',
                                 'id': {'authority': 'EPSG', 'code': 1156}},
                                {'name': 'World Geodetic System 1984 (G2139)',
                                 'id': {'authority': 'EPSG', 'code': 1309}},
                                {'name': 'World Geodetic System 1984 (G2296)',
                                 'id': {'authority': 'EPSG', 'code': 1383}}],
                    'ellipsoid': {'name': 'WGS 84',
                                  'semi_major_axis': 6378137,
                                  'inverse_flattening': 298.257223563},
                    'accuracy': '2.0',
                    'id': {'authority': 'EPSG', 'code': 6326}},
 'coordinate_system': {'subtype': 'ellipsoidal',
                       'axis': [{'name': 'Geodetic latitude',
                                 'abbreviation': 'Lat',
                                 'direction': 'north',
                                 'unit': 'degree'},
                                {'name': 'Geodetic longitude',
                                 'abbreviation': 'Lon',
                                 'direction': 'east',
                                 'unit': 'degree'}]},
 'scope': 'Horizontal component of 3D system.',
 'area': 'World.',
 'bbox': {'south_latitude': -90,
          'west_longitude': -180,
          'north_latitude': 90,
          'east_longitude': 180},
 'id': {'authority': 'EPSG', 'code': 4326}}


def footer_metadata() -> dict[bytes, bytes]:
    """The `geo` and `stac-geoparquet` key-value metadata of a catalog's footer."""
    column = {"encoding": "WKB", "geometry_types": [], "crs": WGS84_CRS_JSON, "edges": "planar",
              "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}}
    geo = {"version": GEOPARQUET_VERSION, "columns": {"geometry": column},
           "primary_column": "geometry"}
    return {b"geo": json.dumps(geo).encode(),
            b"stac-geoparquet": json.dumps({"version": STAC_GEOPARQUET_VERSION}).encode()}
