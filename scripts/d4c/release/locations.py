"""Where the release keeps what is not a published file of the version: the journal and the catalog.

Both may sit on a local or s3 target that this dataset does not publish to (the catalog is
shared by every dataset), so such a target is made, asked for its credentials and probed
here, during the plan. Refusals are plan problems, so nothing is written:

- a journal key inside a public prefix (where a public target on the same store publishes
  versions or raw sources): the journal is working state, never a published file;
- a catalog `s3://bucket/key` whose bucket no s3 target of this release owns.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from d4c import paths
from d4c.errors import D4CError
from d4c.release.journal import Journal
from d4c.release.targets import StateStore, Target, make_target

if TYPE_CHECKING:
    from d4c.release.plan import Plan


@dataclass(frozen=True)
class CatalogPlace:
    dest: str  # a local path or s3://bucket/key
    client: Any = None  # the owning s3 target's boto3 client
    url: str | None = None  # its public URL, when a target publishes it
    target: Target | None = None  # the target that publishes it (catalog: {target, key})
    key: str | None = None


def store(p: Plan, name: str) -> Target | None:
    """The target `name`: one of this release's, or made (and checked) for the journal/catalog."""
    mine = next((t for t in p.targets if t.name == name), None)
    if mine is not None:
        return mine
    if name in p.stores:
        return p.stores[name]
    from d4c.release.plan import context

    t = make_target(p.config.config_of(name))
    unset = t.missing_credentials()
    p.problems += unset
    made: Target | None = None
    if not unset:
        try:
            p.notes[t.name] = t.probe(context(p, t, None))
            made = t
        except D4CError as exc:
            p.problems.append(exc)
    p.stores[name] = made  # type: ignore[assignment]
    return made


def _same_store(a: Target, b: Target) -> bool:
    if a.kind != b.kind:
        return False
    oa, ob = a.config.options, b.config.options  # type: ignore[attr-defined]
    if a.kind == "local":
        return bool(Path(str(oa.get("path"))).resolve() == Path(str(ob.get("path"))).resolve())
    return bool((oa.get("bucket"), oa.get("endpoint_url")) == (ob.get("bucket"), ob.get("endpoint_url")))


def public_prefixes(t: Target, dataset_id: str) -> list[str]:
    """Key prefixes that `t` publishes under: its layout's fixed head (or this dataset's
    folder, for a layout that starts with a placeholder) and, on a source mirror, its sources."""
    layout = str(t.config.layout)  # type: ignore[attr-defined]
    head = layout.split("{", 1)[0]
    head = head[:head.rfind("/") + 1] or t.listing_prefix(dataset_id)  # type: ignore[attr-defined]
    out = [head] if head else []
    return out + ([f"{t.source_prefix}/"] if t.source_mirror else [])  # type: ignore[attr-defined]


def journal(p: Plan) -> Journal:
    """The journal: on this machine always, and on `journal.target` when the config names one."""
    rcp, cfg = p.recipe, p.config
    local = paths.state_dir(p.root) / "journal" / rcp.id / f"v{rcp.version}.json"
    if cfg.journal_target is None:
        return Journal(local, None, None)
    key = cfg.journal_key.format(id=rcp.id, version=rcp.version)
    t = store(p, cfg.journal_target)
    if t is None or not isinstance(t, StateStore):
        return Journal(local, None, None)  # its problem is in the plan already
    for other in [*p.targets, *[s for s in p.stores.values() if s is not None]]:
        hit = next((pre for pre in public_prefixes(other, rcp.id) if key.startswith(pre)), None)
        if other.public and _same_store(t, other) and hit:
            p.problems.append(D4CError(
                f"journal key {key} on target {t.name!r} is inside {other.name!r}'s public prefix {hit}",
                hint="set journal.key to a key outside every public prefix (default "
                     "d4c/journal/{id}/v{version}.json)"))
            return Journal(local, None, None)
    return Journal(local, t, key)


def catalog(p: Plan) -> CatalogPlace:
    """Where the catalog is appended, checked now: a location no target owns is refused."""
    cfg = p.config
    if cfg.catalog_target is not None:
        t = store(p, cfg.catalog_target)
        if t is None:
            return CatalogPlace(cfg.catalog_target + ":" + cfg.catalog_key)
        if t.kind == "local":
            return CatalogPlace(str(Path(str(t.config.options["path"])) / cfg.catalog_key),  # type: ignore[attr-defined]
                                url=t.public_url(cfg.catalog_key), target=t, key=cfg.catalog_key)
        return CatalogPlace(f"s3://{t.bucket}/{cfg.catalog_key}", t.client,  # type: ignore[attr-defined]
                            t.public_url(cfg.catalog_key), target=t, key=cfg.catalog_key)
    dest = cfg.catalog or str(paths.state_dir(p.root) / "catalog" / "catalog.parquet")
    if not dest.startswith("s3://"):
        return CatalogPlace(dest)
    bucket, _, key = dest[len("s3://"):].partition("/")
    name = next((c.name for c in cfg.targets
                 if c.kind == "s3" and c.options.get("bucket") == bucket), None)
    owner = store(p, name) if name else None
    if name is None:
        p.problems.append(D4CError(
            f"catalog {dest}: no s3 target in the targets config owns bucket {bucket!r}",
            where=str(cfg.source) if cfg.source else None,
            hint="point catalog at a bucket of a configured s3 target, or use "
                 "catalog: {target: NAME, key: catalog/catalog.parquet}"))
    if owner is None:
        return CatalogPlace(dest)
    return CatalogPlace(dest, owner.client, owner.public_url(key))  # type: ignore[attr-defined]
