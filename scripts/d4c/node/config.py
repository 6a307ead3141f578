"""The node's settings: one YAML file written by `d4c node init` (docs/nodes.md).

The file holds the node key (32 random bytes, hex: an ed25519 private key), so it is
written mode 0600. Check-ins carry the public key and the node id derived from it
(d4c.node.identity); the rendezvous gate uses the id.
"""
from __future__ import annotations

import fnmatch
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from platformdirs import user_config_dir
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from d4c.atomic import atomic_path
from d4c.errors import D4CError
from d4c.node import identity

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", re.IGNORECASE)
_KEY = re.compile(r"[0-9a-f]{64}")


def parse_size(text: str | int) -> int:
    """500G, 10GiB, 1000000 -> bytes (k/M/G/T powers of 1000, KiB/MiB/GiB/TiB of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    m = _SIZE.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"not a size: {text!r} (e.g. 500G, 10GiB, 1000000)")
    power = " kmgt".index(m[2].lower() or " ")
    return int(float(m[1]) * (1024 if m[3] else 1000) ** power)


def default_path() -> Path:
    env = os.environ.get("D4C_NODE_CONFIG")
    return Path(env) if env else Path(user_config_dir("d4c")) / "node.yaml"


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    catalog: str
    data: Path
    budget: int
    reserve: int
    bandwidth_per_day: int
    key: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    checkins: str | None = None  # the check-in log: s3://bucket/prefix or a folder
    verify_days: int = 30  # re-hash a held file after this many days
    seeder: str | None = None  # transmission-daemon's RPC URL: seed what the node holds

    @property
    def node_id(self) -> str:
        return identity.node_id(identity.public_key(self.key))

    def wants_collection(self, collection: str) -> bool:
        if self.allow and not any(fnmatch.fnmatchcase(collection, p) for p in self.allow):
            return False
        return not any(fnmatch.fnmatchcase(collection, p) for p in self.deny)


TEMPLATE = """\
# d4c node configuration (docs/nodes.md). Sizes: 500G, 2T, 10GiB, or bytes.
catalog: {catalog}
data: {data}               # the folder the node keeps its copies in
budget: {budget}           # the most the node holds
reserve: {reserve}         # extra room for a download in flight before its eviction
bandwidth_per_day: {bandwidth}
allow: {allow}             # collections (glob patterns) to keep; [] = all
deny: {deny}               # collections never to keep
checkins: {checkins}       # the check-in log: s3://bucket/prefix or a folder (null: keep it local)
seeder: {seeder}         # transmission-daemon RPC URL to seed what it holds (null: no seeding)
verify_days: 30            # re-hash each held file this often
key: {key}                 # secret: the node's identity; keep this file private
"""


def _yaml_list(items: list[str]) -> str:
    import json

    return json.dumps(items)


def init(path: Path, *, catalog: str, data: Path, budget: str, reserve: str, bandwidth: str,
         allow: list[str], deny: list[str], checkins: str | None, seeder: str | None = None,
         force: bool = False) -> NodeConfig:
    """Write a new config (refuses to replace one unless `force`: the key is the identity)."""
    if path.exists() and not force:
        raise D4CError(f"{path} already exists", hint="pass --force to replace it (a new key: a new node)")
    for name, value in (("--budget", budget), ("--reserve", reserve), ("--bandwidth", bandwidth)):
        try:
            parse_size(value)
        except ValueError as exc:
            raise D4CError(f"{name}: {exc}") from None
    import json

    text = TEMPLATE.format(catalog=json.dumps(catalog), data=json.dumps(str(data.resolve())),
                           budget=budget, reserve=reserve, bandwidth=bandwidth,
                           allow=_yaml_list(allow), deny=_yaml_list(deny),
                           checkins=json.dumps(checkins) if checkins else "null",
                           seeder=json.dumps(seeder) if seeder else "null",
                           key=secrets.token_hex(32))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        os.chmod(tmp, 0o600)
    os.chmod(path, 0o600)  # atomic publish sets 0644; the key must stay private
    return load(path)


def _need(doc: dict[str, Any], key: str, where: Path) -> Any:
    if doc.get(key) in (None, ""):
        raise D4CError(f"{where}: `{key}` is missing", hint="run `d4c node init` or add it")
    return doc[key]


def load(path: Path | None = None) -> NodeConfig:
    path = path or default_path()
    if not path.is_file():
        raise D4CError(f"no node config at {path}", hint="run `d4c node init` first")
    try:
        doc = YAML(typ="safe", pure=True).load(path.read_bytes())
    except YAMLError:
        raise D4CError(f"{path}: not valid YAML", hint="fix it or run `d4c node init --force`") from None
    if not isinstance(doc, dict):
        raise D4CError(f"{path}: the config must be a mapping")
    try:
        sizes = {k: parse_size(_need(doc, k, path)) for k in ("budget", "reserve", "bandwidth_per_day")}
        verify = int(doc.get("verify_days") or 30)
    except (ValueError, TypeError) as exc:
        raise D4CError(f"{path}: {exc}") from None
    key = str(_need(doc, "key", path))
    if not _KEY.fullmatch(key):
        raise D4CError(f"{path}: `key` must be 64 hex digits", hint="run `d4c node init --force`")
    lists = {}
    for name in ("allow", "deny"):
        value = doc.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise D4CError(f"{path}: `{name}` must be a list of collection patterns")
        lists[name] = tuple(value)
    return NodeConfig(path=path, catalog=str(_need(doc, "catalog", path)),
                      data=Path(str(_need(doc, "data", path))), key=key,
                      checkins=str(doc["checkins"]) if doc.get("checkins") else None,
                      seeder=str(doc["seeder"]) if doc.get("seeder") else None,
                      verify_days=max(1, verify), allow=lists["allow"], deny=lists["deny"],
                      budget=sizes["budget"], reserve=sizes["reserve"],
                      bandwidth_per_day=sizes["bandwidth_per_day"])
