"""SLSA provenance v1 as an in-toto Statement v1, derived from the manifest alone.

A pure function of the manifest (no clock, no host facts), so it is as reproducible
as the manifest; CI signs it (actions/attest-build-provenance) after the build.
"""
from __future__ import annotations

from typing import Any

REPOSITORY = "https://github.com/dataforcanada/d4c"
BUILD_TYPE = f"{REPOSITORY}/blob/main/docs/build-type.md"  # describes the parameters below


def _in_repo(commit: str | None, path: str, sha256: str) -> str:
    """A repository file at the commit that built it, or by content alone when there is none."""
    return f"git+{REPOSITORY}@{commit}#{path}" if commit else f"urn:sha256:{sha256}"


def dependencies(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """SLSA ResourceDescriptors: every `uri` is a URI (a download URL, a git URL pinned to the
    commit, or `urn:sha256:`), every one has a digest."""
    ds, env, code = manifest["dataset"], manifest["environment"], manifest["code"]
    commit = code["commit"]
    folder = ds["recipe_path"].rsplit("/", 1)[0]
    deps: list[dict[str, Any]] = [
        {"name": s["name"], "digest": {"sha256": s["sha256"]},
         "uri": s["url"] or _in_repo(commit, f"{folder}/{s['path']}", s["sha256"])}
        for s in manifest["sources"]
    ]
    deps.append({"name": ds["recipe_path"], "digest": {"sha256": ds["recipe_sha256"]},
                 "uri": _in_repo(commit, ds["recipe_path"], ds["recipe_sha256"])})
    for rel, digest in sorted((ds.get("files") or {}).items()):
        if f"{folder}/{rel}" != ds["recipe_path"]:
            deps.append({"name": f"{folder}/{rel}", "digest": {"sha256": digest},
                         "uri": _in_repo(commit, f"{folder}/{rel}", digest)})
    if commit:
        deps.append({"name": "code", "uri": f"git+{REPOSITORY}", "digest": {"gitCommit": commit}})
    for name, key in ((env["dockerfile"], "dockerfile_sha256"), ("requirements.lock", "lock_sha256")):
        if env.get(key):
            deps.append({"name": name, "digest": {"sha256": env[key]},
                         "uri": _in_repo(commit, name, env[key])})
    if env.get("image_id"):  # a local image id has no registry URI: the digest names it
        deps.append({"name": "image", "digest": {"sha256": env["image_id"].removeprefix("sha256:")}})
    return deps


def statement(manifest: dict[str, Any]) -> dict[str, Any]:
    ds, env = manifest["dataset"], manifest["environment"]
    deps = dependencies(manifest)
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": o["file"], "digest": {"sha256": o["sha256"]}} for o in manifest["outputs"]],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"dataset": ds["id"], "version": ds["version"],
                                       "recipe": ds["recipe_path"], "params": manifest["params"],
                                       "sample": manifest.get("sample", False)},
                "internalParameters": {"runner": env["runner"], "sandbox": env.get("sandbox", "none"),
                                       "network_isolation": env["network_isolation"],
                                       "source_date_epoch": manifest["source_date_epoch"],
                                       "python": env["python"], "packages": env["packages"],
                                       "tools": env.get("tools", {})},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": f"https://github.com/dataforcanada/d4c/runners/{env['runner']}",
                            "version": {"d4c": env["packages"].get("d4c", "unknown")}},
                "metadata": {"invocationId": f"{ds['id']}/v{ds['version']}"},
            },
        },
    }
