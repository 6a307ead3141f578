"""SLSA provenance v1 as an in-toto Statement v1, derived from the manifest alone.

A pure function of the manifest (no clock, no host facts), so it is as reproducible
as the manifest; CI signs it (actions/attest-build-provenance) after the build.
"""
from __future__ import annotations

from typing import Any

BUILD_TYPE = "https://github.com/dataforcanada/d4c/blob/main/docs/architecture.md#build-v1"


def statement(manifest: dict[str, Any]) -> dict[str, Any]:
    ds, env, code = manifest["dataset"], manifest["environment"], manifest["code"]
    deps: list[dict[str, Any]] = [
        {"name": s["name"], "uri": s["url"] or s["path"], "digest": {"sha256": s["sha256"]}}
        for s in manifest["sources"]
    ]
    deps.append({"name": ds["recipe_path"], "uri": ds["recipe_path"], "digest": {"sha256": ds["recipe_sha256"]}})
    if code["commit"]:
        deps.append({"name": "code", "uri": "git+repository", "digest": {"gitCommit": code["commit"]}})
    for key in ("dockerfile", "lock"):
        digest = env.get(f"{key}_sha256")
        if digest:
            deps.append({"name": env["dockerfile"] if key == "dockerfile" else "requirements.lock",
                         "digest": {"sha256": digest}})
    if env.get("image_id"):
        deps.append({"name": "image", "digest": {"sha256": env["image_id"].removeprefix("sha256:")}})
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
                                       "python": env["python"], "packages": env["packages"]},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": f"https://github.com/dataforcanada/d4c/runners/{env['runner']}",
                            "version": {"d4c": env["packages"].get("d4c", "unknown")}},
                "metadata": {"invocationId": f"{ds['id']}/v{ds['version']}"},
            },
        },
    }
