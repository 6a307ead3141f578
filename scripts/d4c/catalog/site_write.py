"""Lay out the catalog site: pages, our script and style, the vendored files, then swap the
finished folder into place (a reader never sees half a site; a rebuild drops stale pages).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from d4c.atomic import atomic_write
from d4c.catalog import site_html
from d4c.catalog.site import dataset_views, load_catalog, load_health
from d4c.errors import D4CError

MARKER = ".d4c-site"  # names a folder this command wrote, so a rebuild may replace it
COPIED = ("site.js", "site.css", "leaflet/leaflet.js", "leaflet/leaflet.css",
          "topojson-client/topojson-client.min.js")
LICENSES = (("Leaflet 1.9.4", "leaflet/LICENSE"), ("topojson-client 3.1.0", "topojson-client/LICENSE"),
            ("world-atlas 2.0.2 (Natural Earth data, public domain)", "world-atlas/LICENSE"))


def _asset(rel: str) -> bytes:
    return resources.files("d4c.catalog").joinpath("site_assets", rel).read_bytes()


def asset_files() -> dict[str, bytes]:
    """assets/...: the files the pages load, byte for byte as vendored, and the licences."""
    files = {f"assets/{rel}": _asset(rel) for rel in COPIED}
    # A page opened from disk cannot fetch() a file: the outline comes as a script.
    files["assets/world-atlas/land-110m.js"] = (
        b"window.D4C_LAND=" + _asset("world-atlas/land-110m.json").strip() + b";\n")
    files["assets/LICENSES.txt"] = b"".join(
        f"== {name} ==\n\n".encode() + _asset(rel).strip() + b"\n\n" for name, rel in LICENSES)
    return files


def render(catalog: str, health: Path | None, min_copies: int) -> tuple[dict[str, bytes], int, int]:
    """Every file of the site (relative path -> bytes), the datasets and the versions."""
    items, collections = load_catalog(catalog)
    if not items:
        raise D4CError(f"the catalog {catalog} has no versions", hint="release a dataset first")
    view = load_health(health, min_copies)
    datasets = dataset_views(items, collections, view)
    files = {"index.html": site_html.overview(datasets, view).encode(),
             "health.html": site_html.health_page(datasets, view).encode(),
             MARKER: b"written by d4c catalog site; the folder is replaced on each build\n"}
    for d in datasets:
        files[f"datasets/{d.id}.html"] = site_html.dataset_page(d).encode()
    files.update(asset_files())
    return files, len(datasets), len(items)


def publish(files: dict[str, bytes], out: Path) -> None:
    """Write the files into a new folder beside `out`, then rename it onto `out`."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise D4CError(f"{out} exists and was not written by `d4c catalog site`",
                       hint="pass --out with a new or empty folder, or one this command wrote")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel in sorted(files):  # a private folder: the rename below is what publishes it
            atomic_write(tmp / rel, files[rel], durable=False)
        tmp.chmod(0o755)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "site")
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_site(catalog: str, out: Path, *, health: Path | None = None,
               min_copies: int = 3) -> tuple[int, int]:
    """Build the site into `out`; returns (datasets, versions)."""
    files, datasets, versions = render(catalog, health, min_copies)
    publish(files, out)
    return datasets, versions
