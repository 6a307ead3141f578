"""Assemble the build diff of one dataset: a fresh build against its latest release."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from d4c import model
from d4c import recipe as recipes
from d4c.diff import compare, previous, semver
from d4c.errors import D4CError

ENV_FIELDS = ("runner", "network_isolation", "dockerfile_sha256", "lock_sha256", "image_id", "python")


def read_manifest(build_dir: Path) -> dict[str, Any]:
    path = build_dir / "manifest.json"
    if not path.is_file():
        raise D4CError(f"no build at {build_dir} (manifest.json missing)",
                       hint="run `d4c build ID` first, or pass --build DIR")
    return model.load_manifest(path).doc


def _changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    keys = sorted(set(old) | set(new))
    return [{"field": f"{prefix}{k}", "old": old.get(k), "new": new.get(k)}
            for k in keys if old.get(k) != new.get(k)]


def _sources(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    o = {s["name"]: s.get("sha256") for s in old}
    n = {s["name"]: s.get("sha256") for s in new}
    return _changes(o, n)


def _environment(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    out = _changes({k: old.get(k) for k in ENV_FIELDS}, {k: new.get(k) for k in ENV_FIELDS})
    return out + _changes(old.get("packages") or {}, new.get("packages") or {}, "packages.") \
        + _changes(old.get("tools") or {}, new.get("tools") or {}, "tools.")


def _artifact(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None,
              old_file: Path | None, new_dir: Path, keys: list[str], sample: bool) -> dict[str, Any]:
    if old is None or new is None:  # what there is to know about the one side that exists
        facts = compare.profile_manifest(new if new is not None else old or {})
        return {"status": "added" if old is None else "removed",
                "facts": {"size": facts.size, "rows": facts.rows, "columns": len(facts.columns),
                          "geometry_types": facts.geometry_types, "crs": facts.crs, "bbox": facts.bbox}}
    new_file = new_dir / str(new["file"])
    fmt_ok = old.get("format") in compare.TABULAR and new.get("format") in compare.TABULAR
    if old_file is not None and fmt_ok and new_file.is_file():
        ot = compare.read_table(old_file, str(old["format"]))
        nt = compare.read_table(new_file, str(new["format"]))
        a = compare.compare_profiles(compare.profile_table(ot, compare.profile_manifest(old)),
                                     compare.profile_table(nt, compare.profile_manifest(new)))
        a["row_diff"] = compare.compare_rows(ot, nt, keys)
        a["facts_from"] = "files"
    else:
        a = compare.compare_profiles(compare.profile_manifest(old), compare.profile_manifest(new))
        a["row_diff"] = None
        a["facts_from"] = "manifests"
    a["status"] = "compared"
    a["file"] = {"old": old.get("file"), "new": new.get("file")}
    if sample:  # a subset of the data: only the shape of the table can be compared
        a["sample"] = True
        a["row_diff"] = None
        for key in ("bytes", "logical", "size", "rows", "bbox"):
            a[key]["same"] = None
        a["nulls"] = []
    return a


def reproduce_commands(dataset_id: str, manifest: dict[str, Any], against: str | None) -> list[str]:
    commit = (manifest.get("code") or {}).get("commit")
    runner = (manifest.get("environment") or {}).get("runner") or "container"
    sample = " --sample" if manifest.get("sample") else ""
    lines = [f"git checkout {commit}" if commit else "git checkout <the PR head commit>", "make env",
             f".venv/bin/d4c validate datasets/{dataset_id}",
             f".venv/bin/d4c build {dataset_id} --runner {runner} --check{sample}"]
    return lines + [f".venv/bin/d4c diff {dataset_id}" + (f" --against {against}" if against else "")]


def make_report(root: Path, dataset_id: str, build_dir: Path, against: str | None = None,
                check: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full diff report (plain data; render.py turns it into markdown or JSON)."""
    recipe = recipes.load_id(dataset_id, root)
    manifest = read_manifest(build_dir)
    if manifest["dataset"]["id"] != dataset_id:
        raise D4CError(f"{build_dir}/manifest.json is a build of {manifest['dataset']['id']!r}, "
                       f"not {dataset_id!r}", hint="pass the right --build DIR")
    version = str(manifest["dataset"].get("version"))
    sample = bool(manifest.get("sample"))
    if version != recipe.version:
        raise D4CError(f"{build_dir} holds a build of version {version} but the recipe says "
                       f"{recipe.version}", hint=f"rebuild: d4c build {dataset_id}")
    record = previous.find_record(root, dataset_id, version, against)
    keys = {o.name: list(o.primary_key) for o in recipe.outputs}
    new_outs = {str(o["name"]): o for o in manifest["outputs"]}
    report: dict[str, Any] = {
        "report_version": 1, "dataset": dataset_id, "version": version, "sample": sample,
        "against": record["version"] if record else None, "note": None, "artifacts": {},
        "sources": [], "environment": [], "params": [], "reproducibility": check,
        "reproduce": reproduce_commands(dataset_id, manifest, against),
    }
    if record is None:
        report["note"] = "First release of this dataset: nothing to compare against."
        report["artifacts"] = {n: _artifact(n, None, new_outs[n], None, build_dir, [], sample)
                               for n in sorted(new_outs)}
        report["sources"] = _sources([], manifest.get("sources") or [])
    else:
        old_m = record["manifest"]
        old_outs = {str(o["name"]): o for o in old_m["outputs"]}
        workdir = Path(tempfile.mkdtemp(prefix="d4c-diff-"))
        try:
            fetched = previous.fetch_artifacts(record, root, workdir)
            for name in sorted(set(old_outs) | set(new_outs)):
                report["artifacts"][name] = _artifact(
                    name, old_outs.get(name), new_outs.get(name), fetched.get(name), build_dir,
                    keys.get(name, []), sample)
        finally:
            previous.cleanup(workdir)
        # COG and PMTiles are always compared on their manifests' facts (grid, layers): only a
        # tabular file that could not be fetched is "missing"
        missing = sorted(n for n, a in report["artifacts"].items() if a.get("facts_from") == "manifests"
                         and n not in fetched and (old_outs[n].get("format") in compare.TABULAR))
        if sample:
            report["note"] = (
                "Sample build (the recipe's `sample` params): only columns, types, geometry type and "
                "CRS are compared with the release; the full build is checked and diffed on merge.")
        elif missing:
            report["note"] = (
                f"The previous artifacts of {', '.join(missing)} could not be fetched intact from any "
                "URL in the release record: compared the manifests only (hashes, sizes, rows, schema, "
                "nulls, geometry, CRS, bbox); row-level changes are unknown.")
        report["sources"] = _sources(old_m.get("sources") or [], manifest.get("sources") or [])
        report["environment"] = _environment(old_m.get("environment") or {},
                                             manifest.get("environment") or {})
        report["params"] = _changes(old_m.get("params") or {}, manifest.get("params") or {})
    report["semver"] = semver.verdict(report["against"], version, report["artifacts"])
    return report
