"""The lint registry: every finding `d4c validate` can report, with a stable id.

Ids never change meaning and are never reused: CI annotations, docs and people's
muscle memory refer to them. `docs/lints.md` is generated from this table.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Control and line-break characters would split a finding over lines (and can forge
# annotations in CI logs): they are shown escaped.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Lint:
    id: str
    name: str
    severity: Severity
    what: str
    why: str
    fix: str


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    col: int
    lint: str
    message: str

    def __post_init__(self) -> None:
        for name in ("path", "message"):
            value = getattr(self, name)
            if _CONTROL.search(value):
                object.__setattr__(self, name, _CONTROL.sub(lambda m: repr(m.group())[1:-1], value))

    @property
    def severity(self) -> Severity:
        return LINTS[self.lint].severity


def _l(id: str, name: str, severity: Severity, what: str, why: str, fix: str) -> Lint:
    return Lint(id, name, severity, what, why, fix)


_ALL = [
    # -- the file itself: checked before any YAML is parsed --------------------------------
    _l("D4C101", "file-too-large", "error", "The recipe file is larger than 256 KiB.",
       "A recipe declares; data belongs in sources. A size cap keeps validation fast and "
       "bounds what a hostile pull request can make CI parse.",
       "Move data into a source file (kept in git under `sources/` or fetched by URL)."),
    _l("D4C102", "not-text", "error", "The file is not UTF-8 text (binary bytes, NUL, or "
       "an invalid UTF-8 sequence).",
       "Recipes are reviewed as text diffs; other encodings and binaries cannot be reviewed.",
       "Save the file as UTF-8 text."),
    _l("D4C103", "empty-file", "error", "The file holds no YAML document (empty or only comments).",
       "An empty recipe declares nothing and would build nothing.",
       "Write the recipe fields; start from a demo recipe in `datasets/`."),
    _l("D4C104", "yaml-syntax", "error", "The YAML cannot be parsed (syntax error, more than one "
       "document, nesting deeper than 50 levels, an invalid number).",
       "Nothing else can be checked until the file parses.",
       "Fix the YAML at the reported position; `---` separated documents are not allowed."),
    _l("D4C105", "tab-character", "error", "A tab character appears in the file.",
       "YAML forbids tabs for indentation, and tabs elsewhere render differently in every "
       "editor and review tool, hiding structure from reviewers.",
       "Replace tabs with spaces (write `\\t` inside a double-quoted string if you need one)."),
    _l("D4C106", "duplicate-key", "error", "A mapping has the same key twice.",
       "YAML loaders disagree on which value wins; a reviewer may read the other one.",
       "Remove or rename one of the keys."),
    _l("D4C107", "alias-limit", "error", "The file uses more than 100 YAML aliases, aliases "
       "expand to more than 20,000 nodes, or an alias refers to its own ancestor.",
       "Alias expansion is how 'billion laughs' YAML bombs exhaust memory; a recipe needs few.",
       "Write the values out instead of using `*alias` references."),
    _l("D4C108", "yaml-tag", "error", "A node has an unsupported YAML tag (`!tag`, `!!binary`, "
       "`!!set`, ...) or a mapping key that is not a plain scalar.",
       "Recipes are plain data (JSON types); tags are loader-specific and keys must be text.",
       "Remove the tag and write the value as plain text, a number, a list or a mapping."),
    # -- the schema ----------------------------------------------------------------------------
    _l("D4C201", "schema", "error", "A value has the wrong type, is out of range, or does not "
       "match the shape `schemas/recipe.schema.json` requires.",
       "Every step reads recipes through the schema's contract.",
       "Follow the message; the field reference is in `docs/contributing.md`."),
    _l("D4C202", "missing-field", "error", "A required field is missing.",
       "The build and the release cannot proceed without it.",
       "Add the field; see the field reference in `docs/contributing.md`."),
    _l("D4C203", "unknown-key", "error", "A key that the schema does not define, at any level "
       "(only `transform.params` and `sample.params` hold free-form keys).",
       "Usually a typo (`sort-by` for `sort_by`, `sha265` for `sha256`): the value would be "
       "silently ignored, and a reviewer would read it as if it counted.",
       "Rename it to the field you meant (the message suggests the closest one) or remove it."),
    # -- identity ------------------------------------------------------------------------------
    _l("D4C301", "id-pattern", "error", "The dataset id does not match "
       "`^[a-z]{2}(-[a-z]{2})?_[a-z0-9]+(?:[_-][a-z0-9]+)*$`.",
       "The id starts with the ISO 3166 region and becomes part of file names, tags and URLs.",
       "Use lowercase letters, digits, `_` and `-`, starting with a region such as `ca_` or `ca-on_`."),
    _l("D4C302", "folder-name", "error", "The dataset folder name differs from the recipe's `id`.",
       "Tools find a dataset by its folder; a mismatch publishes under a name nobody looks for.",
       "Rename the folder to `datasets/<id>/` or change the `id`."),
    _l("D4C303", "duplicate-id", "error", "Two recipes declare the same `id`.",
       "Releases, tags and DOIs are keyed by id; two recipes would overwrite each other.",
       "Give each dataset its own id."),
    _l("D4C304", "semver", "error", "`version` is not a SemVer version (`MAJOR.MINOR.PATCH`).",
       "The version orders releases and says what kind of change each one is.",
       "Write e.g. `1.0.0`, quoted if needed; no leading `v`."),
    _l("D4C305", "version-below-release", "error", "`version` is lower than the newest record "
       "in `releases/<id>/`.",
       "A published version is immutable; a lower version cannot follow it.",
       "Bump the version above the newest release (major: schema break, minor: added columns "
       "or coverage, patch: value fixes)."),
    _l("D4C306", "release-record", "warning", "A file in `releases/<id>/` cannot be read as a "
       "release record with a SemVer `version`.",
       "The version check above can only compare with records it can read.",
       "Repair or remove the broken record (records are written by `d4c release`)."),
    # -- metadata -----------------------------------------------------------------------------
    _l("D4C401", "license-spdx", "error", "`license` is not an SPDX license id.",
       "Catalogs and users match licenses by SPDX id; free text cannot be checked.",
       "Use the id from https://spdx.org/licenses/ (e.g. `OGL-Canada-2.0`, `CC-BY-4.0`)."),
    _l("D4C402", "license-deprecated", "warning", "`license` is an SPDX id that SPDX has deprecated.",
       "Deprecated ids are ambiguous (e.g. `GPL-2.0` does not say 'only' or 'or later').",
       "Use the current id SPDX lists in its place."),
    _l("D4C403", "bilingual", "error", "`title` or `description` lacks English (`en`) or French "
       "(`fr`) text, or the text is blank.",
       "Data for Canada publishes in both official languages.",
       "Add both `en` and `fr` under `title` and `description`."),
    _l("D4C404", "orcid", "error", "A creator's `orcid` is malformed or fails its ISO 7064 "
       "MOD 11-2 check digit.",
       "A mistyped ORCID credits someone else.",
       "Copy the ORCID iD from the person's orcid.org profile (`0000-0002-1825-0097`)."),
    _l("D4C405", "temporal-order", "error", "`temporal.end` is before `temporal.start`.",
       "The coverage would be empty.", "Swap or correct the dates."),
    _l("D4C406", "bbox", "error", "`spatial.bbox` is not `[west, south, east, north]` in degrees "
       "with south <= north and values within range.",
       "Catalog search uses the bbox; a wrong one hides the dataset or shows it everywhere.",
       "Write `[min longitude, min latitude, max longitude, max latitude]` in WGS 84."),
    # -- sources and every other URL ------------------------------------------------------------
    _l("D4C501", "url-https", "error", "A URL anywhere in the recipe (a source or alternate URL, "
       "a provider or creator page, a parameter, any field) is not a valid https URL: another "
       "scheme (`http:`, `ftp:`, `file:`, `s3:`, `data:`, `javascript:`...), no host, or a host "
       "that is not a plain host name.",
       "Plain http can be tampered with in transit (for sources the hash check catches it, but "
       "late); other schemes read local files or run script where catalogs and DOI pages show "
       "the link; hosts with odd characters are read differently by different URL parsers.",
       "Use the https address."),
    _l("D4C502", "url-credentials", "error", "A URL anywhere in the recipe carries a user name "
       "or password.",
       "Recipes are public; credentials in them leak.",
       "Remove the credentials; sources must be publicly downloadable and pages public."),
    _l("D4C503", "url-private-host", "error", "A URL anywhere in the recipe points at localhost, "
       "a loopback, private, link-local, reserved or cloud-metadata address (`169.254.169.254`, "
       "`fd00:ec2::254`; legacy forms like `0x7f.1` or `2130706433` and IPv4 inside IPv6 count), "
       "or a local-only host name.",
       "CI and other people cannot reach it, and it can probe the builder's network.",
       "Use a public URL (tests may pass `--allow-loopback` to accept 127.0.0.1)."),
    _l("D4C504", "sha256", "error", "A source `sha256` is not 64 lowercase hex digits.",
       "Sources are identified by hash; a malformed one can never match.",
       "Paste the output of `sha256sum FILE` (lowercase)."),
    _l("D4C505", "source-path-escape", "error", "A source `path` is absolute, contains `..`, or "
       "resolves (through a symlink) outside the dataset folder.",
       "A build must only read files that belong to its dataset.",
       "Keep the file under `datasets/<id>/` and give its path relative to that folder."),
    _l("D4C506", "source-path-missing", "error", "A source `path` names a file that does not exist.",
       "The build would fail on it.", "Add the file or correct the path."),
    _l("D4C507", "source-hash-mismatch", "error", "A source kept in git does not have the "
       "declared `sha256` or `size`.",
       "The build refuses bytes that do not hash right; better to know before it runs.",
       "Update `sha256` and `size` after changing the file (`sha256sum`, `wc -c`)."),
    _l("D4C508", "duplicate-source", "error", "Two sources have the same `name`.",
       "The transform asks for a source by name.", "Give each source its own name."),
    _l("D4C509", "sample-source", "error", "A `sample.sources` entry names no source of the recipe, "
       "names one twice, or asks for a `range` past the source's declared `size` or of an "
       "`extract: true` archive.",
       "`d4c build --sample` reads exactly what the entry says; it refuses these before fetching.",
       "Name a source from `sources:` once; keep `range` inside `size`; sample an archive with `members`."),
    # -- transform and outputs ----------------------------------------------------------------
    _l("D4C601", "duplicate-output", "error", "Two outputs have the same `name`.",
       "Output names become artifact file names.", "Give each output its own name."),
    _l("D4C602", "output-name", "error", "An output `name` is not safe in a file name "
       "(lowercase letters, digits and single `-`, at most 64 characters).",
       "It becomes part of `<id>_v<version>_<name>.<ext>` on every mirror.",
       "Use e.g. `boundaries` or `table-csv`."),
    _l("D4C603", "sort-keys", "error", "A tabular output (geoparquet, parquet, csv, flatgeobuf, gpkg) "
       "declares no `sort_by`.",
       "Row order must be fixed for builds to be bit-for-bit reproducible.",
       "Add `sort_by: [column, ...]` naming columns that make the order total."),
    _l("D4C604", "transform-file", "error", "The transform's Python file is missing, is not a "
       "`.py` file inside the dataset folder, or cannot be parsed.",
       "The build runs it; it is read here by parsing, never by importing.",
       "Write `python: transform.py:build` and add `datasets/<id>/transform.py`."),
    _l("D4C605", "transform-function", "error", "The transform file does not define the named "
       "top-level function.",
       "The build calls that function with the build context.",
       "Define `def build(ctx):` (or the name after `:`) at the top level of the file."),
    _l("D4C606", "transform-command", "error", "A `command` transform is not a non-empty list of "
       "non-empty strings.",
       "The command runs without a shell, as an argument vector.",
       "Write `command: [program, arg, ...]`."),
    _l("D4C607", "environment", "warning", "The `environment` file under `docker/` does not exist.",
       "Container builds use it; a missing file fails there.",
       "Point `environment` at an existing file such as `docker/Dockerfile`."),
    _l("D4C608", "shards", "error", "The `shards:` and `reduce:` spec is one every build refuses: an "
       "output without a reducer of `reduce.method`, PMTiles without `by: tile`, `by: tile` without "
       "`spatial.bbox`, or a `shards.level` that puts more than 65,536 tiles over the bbox; or a "
       "`shards.level` (`key`) that a partition other than `by: tile` (`row_range`) would ignore.",
       "The build checks the spec when it starts; caught here, the plan does not fan the recipe out "
       "into shard jobs that all fail the same way. A key the partition ignores is a mistake that "
       "nothing else would report.",
       "Follow the hint: `method: by_format` for outputs of several formats, `by: tile` for PMTiles, "
       "declare `spatial.bbox`, lower `shards.level`, or drop the key the partition ignores (docs/scale.md)."),
]

LINTS: dict[str, Lint] = {lint.id: lint for lint in _ALL}
assert len(LINTS) == len(_ALL), "duplicate lint id"


def render_markdown() -> str:
    """docs/lints.md: the lint reference, generated from this registry."""
    out = [
        "# Lint reference",
        "",
        "<!-- Generated by `d4c validate --write-lint-docs docs/lints.md` (`make docs`) from",
        "     scripts/d4c/validate/lints.py. Do not edit by hand: a test fails when stale. -->",
        "",
        "`d4c validate` reports each finding as `path:line:col: ID message`. Errors fail the",
        "check (exit 1); warnings are shown but do not. Ids are stable and never reused.",
        "",
        "| id | name | severity | checks |",
        "|---|---|---|---|",
    ]
    out += [f"| [{x.id}](#{x.id.lower()}) | {x.name} | {x.severity} | {x.what} |" for x in _ALL]
    for x in _ALL:
        out += ["", f"## {x.id}", "", f"**{x.name}** ({x.severity}). {x.what}", "",
                f"Why: {x.why}", "", f"Fix: {x.fix}"]
    return "\n".join(out) + "\n"
