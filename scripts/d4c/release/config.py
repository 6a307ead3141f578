"""The targets config: one YAML file, validated by the targets schema (d4c.schemas), resolved once.

Without a config the default is one `local` target at <repo>/.d4c/publish (retain all,
source mirror), so the whole flow runs offline with no account anywhere.
"""
from __future__ import annotations

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


@dataclass(frozen=True)
class TargetsConfig:
    targets: tuple[TargetConfig, ...]
    trackers: tuple[str, ...] = ()
    webseeds: bool = True
    catalog: str | None = None  # a local path or s3://bucket/key; default .d4c/catalog/
    source: Path | None = None  # the file it came from; None = the built-in default
    credential_vars: tuple[str, ...] = field(default=())


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
        raise D4CError(f"targets config: {loc}: {err.message}", where=str(path),
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
    return TargetsConfig(targets=targets, trackers=tuple(torrent.get("trackers") or ()),
                         webseeds=bool(torrent.get("webseeds", True)), source=path,
                         catalog=_catalog(data.get("catalog"), path.parent),
                         credential_vars=creds)


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
    )


def _catalog(value: str | None, base: Path) -> str | None:
    if value is None or "://" in value:
        return value
    return str((base / value).resolve())
