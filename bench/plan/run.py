"""Benchmark: `d4c plan` on a repository of many datasets whose transforms import shared helpers.

A temporary git repository holds N datasets (default 1,000), each with a recipe and a
transform importing `datasets/_shared/geo.py`; the change edits that helper only, so every
transform must be resolved. Its objects are packed, as in a clone, at every size. Measured
side by side in one run, best of R:
  (a) plan() reading blobs through one `git cat-file --batch`, vs the same plan reading each
      blob with its own `git cat-file blob` process (the straightforward way)  (ratio > 1: faster)
  (b) plan() per dataset, in milliseconds
With --sizes 1000,3000,10000: plan() alone at each size, and the exponent k of time ~ n^k
(least squares on log-log; 1 is linear).
Usage: python bench/plan/run.py [--datasets 1000] [--repeat 2] [--sizes 1000,3000,10000]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _timing import measure
from d4c import plan as planmod
from d4c import plan_git, plan_inputs

# gc.auto=0: a commit past 6,700 loose objects would start a detached `git gc` that packs the
# repository while the plans run (so 10k was packed and 1k/3k loose); make_repo packs every size itself
GIT = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org", "-c", "gc.auto=0"]


def make_repo(root: Path, n: int) -> str:
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=root, check=True)
    for i in range(n):
        d = root / "datasets" / f"ca_bench_{i:05d}"
        d.mkdir(parents=True)
        (d / "recipe.yaml").write_text(
            f"id: ca_bench_{i:05d}\nversion: 1.0.0\nsources:\n  - name: s\n    url: https://example.org/{i}.csv\n"
            f"    sha256: {i:064x}\ntransform:\n  python: transform.py:build\n")
        # each its own bytes, as real transforms are (d4c plan parses a module's bytes once)
        (d / "transform.py").write_text(f"from _shared import geo\nfrom . import local\n\nID = {i}\n\n"
                                        "def build(ctx):\n    geo.f()\n")
        (d / "local.py").write_text(f"X = {i}\n")
    shared = root / "datasets" / "_shared"
    shared.mkdir()
    (shared / "__init__.py").write_text("")
    (shared / "geo.py").write_text("def f():\n    return 1\n")
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "base"], cwd=root, check=True, env=env)
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()
    (shared / "geo.py").write_text("def f():\n    return 2\n")
    subprocess.run([*GIT, "commit", "-q", "-am", "helper"], cwd=root, check=True, env=env)
    subprocess.run([*GIT, "gc", "-q"], cwd=root, check=True)  # packed, as a clone is
    return base


class OneProcessPerBlob(plan_git.Git):
    """The straightforward reader: one `git cat-file blob` process per file."""

    def preload(self, commit: str, paths: list[str]) -> None:
        return None

    def read(self, commit: str, path: str) -> bytes:
        return self.run("cat-file", "blob", f"{commit}:{path}")


def cold_plan(root: Path, base: str) -> planmod.Plan:
    """One plan as a CLI run makes it: the import-scan cache cleared first, so a later round
    does not reuse the bytes an earlier round parsed."""
    plan_inputs.imports_of.cache_clear()
    return planmod.plan(root, base)


def scaling(sizes: list[int], repeat: int) -> None:
    import math

    times = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            base = make_repo(Path(tmp), n)
            t = measure({"plan": lambda root=Path(tmp), b=base: cold_plan(root, b)}, repeat)["plan"]
        times.append(t)
        print(f"  {n:>7,} datasets   {t:8.3f} s   {1000 * t / n:6.3f} ms per dataset")
    xs, ys = [math.log(n) for n in sizes], [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    k = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    print(f"(c) time ~ n^k with k = {k:.2f}   (1: linear)   load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sizes", help="comma-separated dataset counts for the scaling run")
    args = ap.parse_args()
    if args.sizes:
        scaling([int(s) for s in args.sizes.split(",")], args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = make_repo(root, args.datasets)

        def slow() -> planmod.Plan:
            git = OneProcessPerBlob(root)
            return planmod._plan(git, base, "HEAD")

        fast, naive = planmod.plan(root, base), slow()
        assert fast == naive and len(fast.datasets) == args.datasets, "both readers must agree"
        t = measure({"batch reader (d4c plan)": lambda: planmod.plan(root, base),
                     "one process per blob": slow}, args.repeat)
    b, n = t["batch reader (d4c plan)"], t["one process per blob"]
    print(f"{args.datasets:,} datasets, a shared helper changed: all {len(fast.datasets):,} touched")
    print(f"  batch reader (d4c plan)   {b:8.3f} s   {1000 * b / args.datasets:6.2f} ms per dataset")
    print(f"  one process per blob      {n:8.3f} s   {1000 * n / args.datasets:6.2f} ms per dataset")
    print(f"(a) one-per-blob / batch     {n / b:6.2f}x   (> 1: the batch reader is faster)")


if __name__ == "__main__":
    main()
