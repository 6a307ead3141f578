"""The health file published next to the catalog, and read back as the next run's baseline.

The targets config's `catalog: {target, key}` names the store and key of the catalog;
the health files go beside it, under `<folder of key>/health/`: `<date>.parquet`,
`<date>.md` and `latest.parquet` (the newest, whose `date` column names its day). They
are mutable working files, so they are written with the target's state writes (as the
journal and the STAC tree are), never with the immutable uploads of a release. `pull`
reads `latest.parquet` anonymously, so a fresh CI runner has the ETag baseline (the
previous day's health file) that `d4c mirrors check` compares against.
"""
from __future__ import annotations

import io
import posixpath
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import requests

from d4c import http
from d4c.atomic import atomic_write
from d4c.errors import D4CError
from d4c.mirrors import health
from d4c.mirrors.net import file_path
from d4c.release import config as tconfig
from d4c.release.targets import StateStore, Target, make_target

LATEST = "latest.parquet"
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
MEDIA = {".parquet": "application/vnd.apache.parquet", ".md": "text/markdown; charset=utf-8"}


def place(cfg: tconfig.TargetsConfig) -> tuple[Target, str]:
    """The catalog's target and the key prefix of the health files beside the catalog."""
    if cfg.catalog_target is None:
        raise D4CError("the targets config publishes no catalog as a file of a target",
                       where=str(cfg.source) if cfg.source else None,
                       hint="set catalog: {target: NAME, key: catalog/catalog.parquet}")
    t = make_target(cfg.config_of(cfg.catalog_target))
    folder = posixpath.dirname(cfg.catalog_key)
    return t, posixpath.join(folder, "health") + "/" if folder else "health/"


def publish(health_dir: Path, cfg: tconfig.TargetsConfig) -> list[str]:
    """Write the newest health file, its summary and `latest.parquet`; their public URLs."""
    latest = health.latest(health_dir)
    if latest is None:
        raise D4CError(f"no health file in {health_dir}", hint="run `d4c mirrors check` first")
    t, prefix = place(cfg)
    unset = t.missing_credentials()
    if unset:
        raise unset[0]
    assert isinstance(t, StateStore)  # the config allows only local and s3 catalog targets
    summary = latest.with_suffix(".md")
    files = [(latest, latest.name), (latest, LATEST)] + ([(summary, summary.name)] if summary.is_file() else [])
    urls = []
    for path, name in files:
        t.write_state(prefix + name, path.read_bytes(), MEDIA[path.suffix])
        urls.append(t.public_url(prefix + name))
    return urls


def pull(health_dir: Path, cfg: tconfig.TargetsConfig) -> Path | None:
    """The published `latest.parquet` into the folder as `<its date>.parquet` (None: not there)."""
    t, prefix = place(cfg)
    url = t.public_url(prefix + LATEST)
    local = file_path(url)
    if local is not None:
        data = local.read_bytes() if local.is_file() else None
    else:
        try:
            resp = http.session().get(url, timeout=http.DEFAULT_TIMEOUT)
        except requests.RequestException as exc:
            raise D4CError(f"cannot read {url}: {http.describe(exc)}") from None
        if resp.status_code in (403, 404):
            return None
        if resp.status_code != 200:
            raise D4CError(f"{url} answered HTTP {resp.status_code}", hint="rerun later")
        data = resp.content
    if data is None:
        return None
    try:
        dates = pq.read_table(io.BytesIO(data), columns=["date"]).column("date").unique().to_pylist()
    except (pa.ArrowException, KeyError, OSError):  # a server's bytes: one line, no traceback
        raise D4CError(f"{url} is not a health file", hint="publish one with `d4c mirrors publish`") from None
    if len(dates) != 1 or not _DATE.fullmatch(str(dates[0])):
        raise D4CError(f"{url} holds no single check date", hint="publish one with `d4c mirrors publish`")
    dest = health_dir / f"{dates[0]}.parquet"
    health_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, data=data)
    return dest
