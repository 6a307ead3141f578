"""Benchmark: `d4c validate` vs `check-jsonschema` on the same 1,000 generated recipes.

Both run as the commands a CI job would call (a fresh process each, start-up included),
alternating, three rounds; the best time of each is compared. d4c does more work: the
schema plus every lint (SPDX, URLs, ORCID, transform parsed with ast, releases, ...).
Usage: python bench/validate/run.py [--recipes N] [--rounds R]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
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


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, CPU seconds (user + system, all worker processes) and the result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    d4c = [str(BIN / "d4c"), "validate", "datasets"]
    cjs = shutil.which("check-jsonschema", path=str(BIN)) or "check-jsonschema"
    with tempfile.TemporaryDirectory(prefix="d4c-bench-validate-") as tmp:
        root = Path(tmp)
        files = generate(root, args.recipes)
        other = [cjs, "--schemafile", str(REPO / "scripts" / "d4c" / "schemas" / "recipe.schema.json"),
                 *[str(f.relative_to(root)) for f in files]]
        runs: dict[str, list[tuple[float, float]]] = {"d4c": [], "cjs": []}
        for _ in range(args.rounds):  # alternate, so both see the same machine load
            for name, cmd in (("d4c", d4c), ("cjs", other)):
                wall, cpu, proc = timed(cmd, root)
                if proc.returncode != 0:
                    print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                    return 1
                runs[name].append((wall, cpu))
    print(f"recipes: {args.recipes}  rounds: {args.rounds}  cores: {os.cpu_count()}  "
          f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'tool':<44}{'best wall s':>12}{'its CPU s':>11}   all walls (s)")
    labels = {"d4c": "d4c validate (schema + all lints)",
              "cjs": "check-jsonschema --schemafile (schema only)"}
    best = {k: min(v) for k, v in runs.items()}
    for k, label in labels.items():
        walls = " ".join(f"{w:.3f}" for w, _ in runs[k])
        print(f"{label:<44}{best[k][0]:>12.3f}{best[k][1]:>11.3f}   {walls}")
    ratio = best["d4c"][0] / best["cjs"][0]
    print(f"ratio d4c / check-jsonschema, wall: {ratio:.2f} (goal <= 1.00: "
          f"{'met' if ratio <= 1 else 'missed'}); CPU: {best['d4c'][1] / best['cjs'][1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
