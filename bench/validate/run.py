"""Benchmark: `d4c validate` vs `check-jsonschema` on the same 1,000 generated recipes.

Both run as the commands a CI job would call (fresh processes, start-up included), in two
fair pairings, interleaved rounds, min and median of each, with the load average:
  - one process each: `d4c validate --jobs 1` against one `check-jsonschema`;
  - all cores each: `d4c validate --jobs <cores>` against <cores> `check-jsonschema`
    processes at once, each given an equal share of the files (its wall time is the last
    one to finish).
d4c does more work: the schema plus every lint (SPDX, URLs, ORCID, transform parsed with
ast, releases, ...).
Usage: python bench/validate/run.py [--recipes N] [--rounds R]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ORCIDS = ["0000-0002-1825-0097", "0000-0001-5109-3700", "0000-0002-1694-233X"]
LICENSES = ["OGL-Canada-2.0", "CC-BY-4.0", "CC0-1.0", "ODbL-1.0"]
FORMATS = ["geoparquet", "parquet", "csv", "flatgeobuf"]


def recipe(i: int) -> str:
    rid = f"ca-on_bench_{i:04d}_dataset"
    sources = "".join(
        f"""  - name: part-{j}
    url: https://www12.statcan.gc.ca/census-recensement/2021/files/part-{i}-{j}.zip
    alternate_urls: [https://mirror.example.org/sources/part-{i}-{j}.zip]
    sha256: {hashlib.sha256(f"{i}-{j}".encode()).hexdigest()}
    size: {1000 + i * 7 + j}
    extract: true
""" for j in range(1 + i % 3))
    outputs = "".join(
        f"""  - name: output-{k}
    format: {FORMATS[(i + k) % 4]}
    sort_by: [dguid, year]
    primary_key: [dguid]
""" for k in range(1 + i % 2))
    return f"""# Generated benchmark recipe {i}
id: {rid}
version: {i % 5}.{i % 7}.{i % 3}
title:
  en: Benchmark dataset number {i}, with a realistic title length
  fr: Jeu de données de référence numéro {i}, avec un titre de longueur réaliste
description:
  en: >-
    A generated recipe for benchmarking the validator. It has several sources,
    outputs and creators, like the recipes contributors write.
  fr: >-
    Une recette générée pour mesurer le validateur. Elle a plusieurs sources,
    sorties et créateurs, comme les recettes des contributeurs.
license: {LICENSES[i % 4]}
creators:
  - name: Person {i}
    affiliation: Data for Canada
    orcid: {ORCIDS[i % 3]}
  - name: Statistics Canada
providers:
  - name: Statistics Canada
    roles: [producer, licensor]
    url: https://www.statcan.gc.ca
keywords: [census, boundaries, bench-{i}]
temporal:
  start: "2021-01-01"
  end: "2021-12-31"
spatial:
  bbox: [-141.0, 41.7, -52.6, 83.1]
sources:
{sources}transform:
  python: transform.py:build
  params:
    crs: EPSG:4326
    simplify: {i % 10}
environment: docker/Dockerfile
outputs:
{outputs}distribution:
  targets: all
  torrent: true
sample:
  params:
    limit: 100
"""


def generate(root: Path, n: int) -> list[Path]:
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "Dockerfile").write_text("FROM scratch\n")
    files = []
    for i in range(n):
        folder = root / "datasets" / f"ca-on_bench_{i:04d}_dataset"
        folder.mkdir(parents=True)
        (folder / "transform.py").write_text("def build(ctx):\n    ctx.params\n")
        (folder / "recipe.yaml").write_text(recipe(i))
        files.append(folder / "recipe.yaml")
    return files


def timed(cmds: list[list[str]], cwd: Path) -> tuple[float, float]:
    """Wall seconds until the last of `cmds` (run at once) ends, and their CPU seconds
    (user + system, every worker process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    for cmd, proc in zip(cmds, procs):
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[:3]} failed: {out[-2000:]} {err[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    cjs = shutil.which("check-jsonschema", path=str(BIN)) or "check-jsonschema"
    schema = str(REPO / "scripts" / "d4c" / "schemas" / "recipe.schema.json")
    with tempfile.TemporaryDirectory(prefix="d4c-bench-validate-") as tmp:
        root = Path(tmp)
        files = [str(f.relative_to(root)) for f in generate(root, args.recipes)]
        shares = [files[i::cores] for i in range(cores)]
        contenders = {
            "d4c, 1 process": [[str(BIN / "d4c"), "validate", "--jobs", "1", "datasets"]],
            "check-jsonschema, 1 process": [[cjs, "--schemafile", schema, *files]],
            f"d4c, --jobs {cores}": [[str(BIN / "d4c"), "validate", "--jobs", str(cores), "datasets"]],
            f"check-jsonschema, {cores} processes": [[cjs, "--schemafile", schema, *share]
                                                       for share in shares],
        }
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders}
        for _ in range(args.rounds):  # interleaved, so all see the same machine load
            for name, cmds in contenders.items():
                runs[name].append(timed(cmds, root))
    load = os.getloadavg()
    print(f"recipes: {args.recipes}  rounds: {args.rounds}  cores: {cores}  "
          f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'':36}{'wall min s':>11}{'median s':>10}{'CPU s':>8}")
    best = {k: min(w for w, _ in v) for k, v in runs.items()}
    for name, rs in runs.items():
        print(f"{name:36}{best[name]:>11.3f}{statistics.median(w for w, _ in rs):>10.3f}"
              f"{statistics.median(c for _, c in rs):>8.3f}")
    names = list(contenders)
    for mine, theirs, what in ((names[0], names[1], "one process each"),
                               (names[2], names[3], "all cores each")):
        ratio = best[mine] / best[theirs]
        print(f"d4c / check-jsonschema, {what}: {ratio:.2f} (goal <= 1.00: "
              f"{'met' if ratio <= 1 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
