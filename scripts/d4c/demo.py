"""`make demo`: the whole flow on the demo datasets, offline, with no account anywhere.

validate -> build --check -> release (to the default local target in .d4c/publish)
-> catalog build -> catalog query -> verify, then a summary of what was done.
Every step is the same `d4c` command a contributor or a workflow runs.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from d4c import paths
from d4c.cli import main as d4c


def _datasets(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "datasets").iterdir() if (p / "recipe.yaml").is_file())


def _scratch_repo(src: Path, dst: Path) -> Path:
    """A fresh git copy of the checkout, so the demo's release records never touch yours."""
    shutil.rmtree(dst, ignore_errors=True)
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=src, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (src / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dst / rel)
    git = ["git", "-c", "user.name=d4c demo", "-c", "user.email=demo@dataforcanada.org"]
    env = {**os.environ, "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "demo"], cwd=dst, check=True, env=env)
    return dst


def run_demo() -> int:
    checkout = paths.repo_root()
    root = _scratch_repo(checkout, paths.state_dir(checkout) / "demo")
    os.environ["D4C_REPO"] = str(root)
    os.chdir(root)
    print(f"Demo repository (a scratch git copy of this checkout): {root}")
    state = paths.state_dir(root)
    catalog = state / "catalog" / "catalog.parquet"
    steps: list[tuple[str, list[str]]] = [("validate", ["validate"])]
    for ds in _datasets(root):
        steps.append((f"build --check {ds}", ["build", ds, "--check"]))
        steps.append((f"release {ds}", ["release", ds]))
    steps.append(("catalog build", ["catalog", "build", "--out", str(catalog)]))
    steps.append(("catalog query --latest", ["catalog", "query", "--catalog", str(catalog), "--latest"]))
    results: list[tuple[str, int, float]] = []

    def run_steps(todo: list[tuple[str, list[str]]]) -> bool:
        for title, argv in todo:
            print(f"\n== d4c {' '.join(argv)}", flush=True)
            t0 = time.perf_counter()
            code = d4c(argv)
            results.append((title, code, time.perf_counter() - t0))
            if code != 0:
                return False
        return True

    # The release records exist only once the releases ran: list them afterwards.
    if run_steps(steps):
        run_steps([
            (f"verify {rec.parent.name}/{rec.stem}", ["verify", str(rec)])
            for rec in sorted((root / "releases").glob("*/*.json"))
        ])
    print("\nDemo summary")
    for title, code, secs in results:
        print(f"  {'ok ' if code == 0 else 'FAIL'}  {title:<60} {secs:6.1f}s")
    print(f"Published files: {state / 'publish'}\nRelease records: {root / 'releases'}\nCatalog: {catalog}")
    failed = [t for t, c, _ in results if c != 0]
    if failed:
        print(f"Demo stopped at: {failed[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
