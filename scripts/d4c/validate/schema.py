"""JSON-Schema findings: the recipe schema compiled once, its errors turned into findings.

Errors on fields that have their own lint (id pattern, SemVer, sha256, ORCID, output
names, transform shape, en/fr text) carry that lint's id, so one problem gives one
finding under the id the docs explain.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Iterator
from typing import Any

from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

from d4c import schemas
from d4c.validate.lints import Finding
from d4c.validate.yamlpos import JPath, Loaded

# (generalized path, JSON-schema keyword) -> lint id; "*" stands for any list index.
_RULES: dict[tuple[str, str], str] = {
    ("id", "pattern"): "D4C301",
    ("version", "pattern"): "D4C304",
    ("sources/*/sha256", "pattern"): "D4C504",
    ("sources/*/url", "pattern"): "D4C501",
    ("sources/*/alternate_urls/*", "pattern"): "D4C501",
    ("providers/*/url", "pattern"): "D4C501",
    ("creators/*/orcid", "pattern"): "D4C404",
    ("outputs/*/name", "pattern"): "D4C602",
    ("outputs/*/name", "maxLength"): "D4C602",
    ("outputs/*/sort_by", "minItems"): "D4C603",
    ("transform/python", "pattern"): "D4C604",
    ("transform/command", "minItems"): "D4C606",
    ("transform/command", "type"): "D4C606",
    ("transform/command/*", "type"): "D4C606",
    ("transform/command/*", "minLength"): "D4C606",
    ("title", "required"): "D4C403",
    ("description", "required"): "D4C403",
    ("title/en", "minLength"): "D4C403",
    ("title/fr", "minLength"): "D4C403",
    ("description/en", "minLength"): "D4C403",
    ("description/fr", "minLength"): "D4C403",
}
_REQUIRED = re.compile(r"^'(.+)' is a required property$")
_DEPENDENT = re.compile(r"^'(.+)' is a dependency of '(.+)'$")  # dependentRequired: `shards` needs `reduce`
_TYPES = {"object": "a mapping", "array": "a list", "string": "text", "integer": "a whole number",
          "number": "a number", "boolean": "true or false", "null": "empty"}


def validator() -> Validator:
    """The recipe schema's validator (d4c.schemas compiles it once per process, and forked
    workers inherit it); no format checker."""
    return schemas.validator("recipe")


def _field(path: JPath) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[") or "recipe"


def _kind(value: Any) -> str:
    for name, py in (("boolean", bool), ("integer", int), ("number", float), ("string", str),
                     ("array", list), ("object", dict)):
        if isinstance(value, py):
            return _TYPES[name]
    return _TYPES["null"]


def _message(err: ValidationError, path: JPath) -> str:
    name, v, kw = _field(path), err.validator_value, err.validator
    if kw == "type":
        want = " or ".join(_TYPES.get(t, t) for t in ([v] if isinstance(v, str) else v))
        # quoting helps a hash of digits, not `wall_time: 90` (the pattern still refuses "90")
        quote = "; put it in quotes" if v == "string" and isinstance(err.instance, (int, float)) and re.search(
            err.schema.get("pattern", ""), str(err.instance)) else ""
        return f"`{name}` must be {want}, not {_kind(err.instance)}{quote}"
    if kw == "enum":
        return f"`{name}` must be one of: {', '.join(map(str, v))}"
    if kw == "pattern":
        return f"`{name}` {str(err.instance)[:80]!r} does not match {v}"
    if kw in ("minItems", "minLength"):
        return f"`{name}` must not be empty"
    if kw in ("maxItems", "maxLength", "minimum", "maximum"):
        return f"`{name}`: {kw} is {v}"
    if kw == "uniqueItems":
        return f"`{name}` lists an item twice"
    if kw == "oneOf" and path[:1] == ("sources",):
        both = isinstance(err.instance, dict) and {"url", "path"} <= err.instance.keys()
        return f"`{name}` {'has both' if both else 'needs one of'} `url` and `path`" + (
            "; keep one" if both else "")
    if kw == "oneOf" and path == ("transform",):
        both = isinstance(err.instance, dict) and {"python", "command"} <= err.instance.keys()
        return ("`transform` has both `python` and `command`; keep one" if both
                else "`transform` needs `python` or `command`")
    if kw == "anyOf" and path == ("distribution", "targets"):
        return "`distribution.targets` must be `all` or a list of target names"
    return f"`{name}`: {err.message[:160]}"


def _suggest(key: str, known: list[str], present: Iterable[str]) -> str | None:
    """The known key closest to `key`: spelled `Sort-By` it is still `sort_by`; keys the
    mapping does not already have are preferred (a duplicate is rarely what was meant)."""
    norm = key.lower().replace("-", "_")
    absent = [k for k in known if k not in present]
    for pool in (absent, known):
        hint = difflib.get_close_matches(norm, pool, n=1)
        if hint:
            return hint[0]
    return None


def _unknown(err: ValidationError, path: JPath, loaded: Loaded,
             display: str) -> Iterator[tuple[Finding, str | None]]:
    """One finding per unknown key, with the key it most likely meant."""
    known = list(err.schema.get("properties", {}))
    for key in err.instance:
        if key not in known:
            hint = _suggest(key, known, err.instance)
            tail = f"; did you mean `{hint}`?" if hint else f"; known keys: {', '.join(known)}"
            line, col = loaded.pos((*path, key), key=True)
            yield Finding(display, line, col, "D4C203", f"unknown key `{_field((*path, key))}`{tail}"), hint


def _explained(err: ValidationError, path: JPath, meant: dict[JPath, set[str]]) -> bool:
    """A missing key (or `url`/`path`, `python`/`command`) that an unknown-key finding at the
    same place already names: `sha265:` gives one finding, not also "missing `sha256`"."""
    hints = meant.get(path)
    if not hints:
        return False
    if err.validator == "required":
        m = _REQUIRED.match(err.message)
        return bool(m and m.group(1) in hints)
    if err.validator == "oneOf" and isinstance(err.instance, dict):
        wanted = {k for branch in err.validator_value for k in branch.get("required", [])}
        return not (wanted & err.instance.keys()) and bool(wanted & hints)
    return False


def findings(loaded: Loaded, display: str, judged: Collection[JPath] = frozenset()) -> list[Finding]:
    """Schema findings. `judged`: paths whose URL the URL lint reported already, so a
    pattern mismatch on the same value is not a second finding."""
    errors = list(validator().iter_errors(loaded.data))
    out: list[Finding] = []
    meant: dict[JPath, set[str]] = {}  # where unknown keys are -> the keys they suggest
    for err in errors:
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            path: JPath = tuple(err.absolute_path)
            for finding, hint in _unknown(err, path, loaded, display):
                out.append(finding)
                if hint:
                    meant.setdefault(path, set()).add(hint)
    for err in errors:
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            continue
        if err.validator == "oneOf" and not isinstance(err.instance, dict):
            continue  # "url or path" on a non-mapping: its type error already says it
        if err.validator == "pattern" and path in judged:
            continue
        if _explained(err, path, meant):
            continue
        dep = _DEPENDENT.match(err.message) if err.validator == "dependentRequired" else None
        if dep:  # at the key that needs the other, not at the top of the file
            line, col = loaded.pos((*path, dep.group(2)), key=True)
            out.append(Finding(display, line, col, "D4C202", f"missing `{_field((*path, dep.group(1)))}`, which "
                               f"`{_field((*path, dep.group(2)))}` needs"))
            continue
        line, col = loaded.pos(path, key=err.validator == "required")
        general = "/".join("*" if isinstance(p, int) else p for p in path)
        if err.validator == "required":
            m = _REQUIRED.match(err.message)
            missing = m.group(1) if m else "a field"
            lint = _RULES.get((general, "required"), "D4C202")
            if not path and missing in ("title", "description"):
                lint = "D4C403"
            out.append(Finding(display, line, col, lint,
                               f"missing `{_field((*path, missing))}`"))
            continue
        lint = _RULES.get((general, str(err.validator)), "D4C201")
        out.append(Finding(display, line, col, lint, _message(err, path)))
    return out
