"""The data GeoParquet's `geo` metadata validates against the GeoParquet 1.1.0 JSON schema.

The schema is not packaged anywhere we install, so it ships in tests/data (its origin is
in its `$comment`); its PROJJSON reference resolves to the schema pyproj's PROJ ships.
"""
from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pyproj
import pytest
import shapely
from d4c.build import writers
from jsonschema import Draft7Validator
from referencing import Registry, Resource

SCHEMA = Path(__file__).parent / "data" / "geoparquet" / "schema-1.1.0.json"
PROJJSON = Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"


def validator() -> Draft7Validator:
    projjson = Resource.from_contents(json.loads(PROJJSON.read_text()))
    registry = Registry().with_resource("https://proj.org/schemas/v0.5/projjson.schema.json", projjson)
    for uri in ("https://proj.org/schemas/v0.7/projjson.schema.json", projjson.id() or ""):
        if uri:
            registry = registry.with_resource(uri, projjson)
    return Draft7Validator(json.loads(SCHEMA.read_text()), registry=registry)


def geo(path: Path) -> dict:
    return json.loads(pq.ParquetFile(path).metadata.metadata[b"geo"])


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3347", None])
def test_geo_metadata_validates_with_its_bbox_covering(tmp_path: Path, crs: str | None) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-141, -52, 300), rng.uniform(42, 83, 300)
    geoms = shapely.box(x, y, x + 1, y + 1)
    geoms[::10] = shapely.multipoints(np.stack([x[::10], y[::10]], axis=1)[:, None, :])
    gdf = gpd.GeoDataFrame({"id": np.arange(300)}, geometry=geoms, crs=crs)
    path = tmp_path / "g.parquet"
    writers.write_geoparquet(path, gdf, ["id"])
    meta = geo(path)
    errors = sorted(validator().iter_errors(meta), key=str)
    assert not errors, errors[0].message
    assert meta["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    bbox = pq.read_schema(path).field("bbox").type
    assert [bbox.field(i).name for i in range(bbox.num_fields)] == ["xmin", "ymin", "xmax", "ymax"]


def test_the_schema_rejects_what_it_should() -> None:
    v = validator()
    good = {"version": "1.1.0", "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                     "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}}}}
    assert v.is_valid(good)
    bad_cover = json.loads(json.dumps(good))
    bad_cover["columns"]["geometry"]["covering"]["bbox"]["xmin"] = ["bbox", "ymin"]
    bad_type = json.loads(json.dumps(good))
    bad_type["columns"]["geometry"]["geometry_types"] = ["LinearRing"]
    for doc in (bad_cover, bad_type, {**good, "version": "1.0.0"}):
        assert not v.is_valid(doc)
