"""The targets config: one YAML file, validated by the targets schema (d4c.schemas), resolved once.

Without a config the default is one `local` target at <repo>/.d4c/publish (retain all,
source mirror), so the whole flow runs offline with no account anywhere.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from d4c import paths, schemas
from d4c.errors import D4CError
from d4c.redact import register_env
from d4c.release.targets.base import DEFAULT_LAYOUT, TargetConfig

DEFAULT_JOURNAL_KEY = "d4c/journal/{id}/v{version}.json"
DEFAULT_CATALOG_KEY = "catalog/catalog.parquet"
STATE_KINDS = ("local", "s3")  # the kinds that can hold the journal or the catalog


@dataclass(frozen=True)
class TargetsConfig:
    targets: tuple[TargetConfig, ...]
    trackers: tuple[str, ...] = ()
    webseeds: bool = True
    catalog: str | None = None  # a local path or s3://bucket/key; default .d4c/catalog/
    source: Path | None = None  # the file it came from; None = the built-in default
    credential_vars: tuple[str, ...] = field(default=())
    catalog_target: str | None = None  # catalog: {target, key}: a published file on that target
    catalog_key: str = DEFAULT_CATALOG_KEY
    journal_target: str | None = None  # None: the journal stays on this machine (.d4c/journal/)
    journal_key: str = DEFAULT_JOURNAL_KEY

    def config_of(self, name: str) -> TargetConfig:
        return next(t for t in self.targets if t.name == name)


def schema(root: Path | None = None) -> dict[str, Any]:
    """The targets schema, from the installed package (`root` is not used)."""
    return schemas.load("targets")


def default_config(root: Path | None = None) -> TargetsConfig:
    publish = paths.state_dir(root) / "publish"
    local = TargetConfig(kind="local", name="local", url=publish.as_uri() + "/{key}",
                         layout=DEFAULT_LAYOUT, retain="all", source_mirror=True,
                         options={"path": str(publish)})
    return TargetsConfig(targets=(local,))


def load(path: Path | None, root: Path | None = None) -> TargetsConfig:
    """Read and validate a targets config, or return the default when `path` is None."""
    if path is None:
        return default_config(root)
    try:
        data = YAML(typ="safe", pure=True).load(path.read_bytes())
    except OSError as exc:
        raise D4CError(f"cannot read targets config {path}: {exc.strerror}") from None
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise D4CError("targets config is not valid YAML", where=where,
                       hint="fix the YAML syntax") from None
    errors = sorted(jsonschema.Draft202012Validator(schema(root)).iter_errors(data),
                    key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        loc = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise D4CError(f"targets config: {loc}: {_message(err)}", where=str(path),
                       hint="see schemas/targets.schema.json and docs/operators.md")
    names = [t["name"] for t in data["targets"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise D4CError(f"targets config: duplicate target name {dupes[0]!r}", where=str(path),
                       hint="give every target a unique name")
    targets = tuple(_target(t, path.parent) for t in data["targets"])
    creds = tuple(sorted({v for t in targets for v in t.credentials.values()}))
    register_env(creds)  # mask their values in every log line and error from now on
    torrent = data.get("torrent") or {}
    catalog, journal = data.get("catalog"), data.get("journal") or {}
    placed = catalog if isinstance(catalog, dict) else {}
    _state_target("catalog", placed.get("target"), targets, path)
    _state_target("journal", journal.get("target"), targets, path)
    return TargetsConfig(targets=targets, trackers=tuple(torrent.get("trackers") or ()),
                         webseeds=bool(torrent.get("webseeds", True)), source=path,
                         catalog=None if placed else _catalog(catalog, path.parent),
                         credential_vars=creds, catalog_target=placed.get("target"),
                         catalog_key=placed.get("key", DEFAULT_CATALOG_KEY),
                         journal_target=journal.get("target"),
                         journal_key=journal.get("key", DEFAULT_JOURNAL_KEY))


def _message(err: jsonschema.ValidationError) -> str:
    """The schema's message (a bound with the field's description, which says its unit); for an
    unknown key, the key and the nearest known one (a typo)."""
    if err.validator in ("minimum", "maximum") and isinstance(err.schema, dict) \
            and err.schema.get("description"):
        return f"{err.message} ({err.schema['description']})"
    if err.validator != "additionalProperties" or not isinstance(err.instance, dict):
        return err.message
    known = sorted(err.schema.get("properties") or {})
    unknown = sorted(k for k in err.instance if k not in known)
    if not unknown:
        return err.message
    near = difflib.get_close_matches(unknown[0], known, n=1)
    guess = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(known)})"
    return f"unknown key {unknown[0]!r}{guess}"


def _state_target(what: str, name: str | None, targets: tuple[TargetConfig, ...], path: Path) -> None:
    """`catalog.target` / `journal.target` must name a local or s3 target of this config."""
    if name is None:
        return
    kind = next((t.kind for t in targets if t.name == name), None)
    if kind is None:
        raise D4CError(f"targets config: {what}.target names unknown target {name!r}", where=str(path),
                       hint="name a local or s3 target listed under targets")
    if kind not in STATE_KINDS:
        raise D4CError(f"targets config: {what}.target {name!r} is a {kind} target", where=str(path),
                       hint="the journal and the catalog live on a local or s3 target")


def _target(raw: dict[str, Any], base: Path) -> TargetConfig:
    options = dict(raw.get("options") or {})
    url = raw.get("url")
    if raw["kind"] == "local":
        # Relative paths are relative to the config file, so a config is portable.
        folder = (base / options.get("path", "publish")).resolve()
        options["path"] = str(folder)
        url = url or folder.as_uri() + "/{key}"
    return TargetConfig(
        kind=raw["kind"], name=raw["name"], url=url or "{key}",
        layout=raw.get("layout", DEFAULT_LAYOUT), retain=raw.get("retain", "all"),
        source_mirror=bool(raw.get("source_mirror", False)),
        credentials=dict(raw.get("credentials") or {}), options=options,
        public=bool(raw.get("public", True)), source_prefix=raw.get("source_prefix"),
    )


def _catalog(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value:
        return value
    return str((base / value).resolve())
