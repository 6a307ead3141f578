"""Benchmark: the node policies side by side on a simulated volunteer network.

The issue's table at a smaller scale (default 120 nodes, 1,200 artifacts, 90 days; the
issue's run was 1,000 nodes and 10,000 artifacts): for each capacity (5x and 1.35x the
corpus) one world, and the smartnode-transmission rule, an IA.BAK-style random policy and
the rendezvous-gated priority policy (d4c.node.policy, the daemon's code) run on it. Prints
per policy the share of artifacts with >= 3 copies, with 0 copies, at-risk artifacts lost,
the share with > 5 copies and TB moved, plus the wall time and the load average. Then
the scenarios at 5x, the three policies side by side on each: a whole provider (a fifth of
the nodes) gone on day 45, 30% of nodes lying, a flash crowd on a national release on day
60, a 10 TB file; each with its own figures (liars found and the files they claimed;
the release's copies and transfer; the big file's node copies).
The world is described in d4c.node.simulate. Same seed, same tables.
Usage: python bench/nodes/run.py [--nodes 120] [--artifacts 1200] [--days 90] [--seed 1]
                                 [--no-scenarios]
"""
from __future__ import annotations

import argparse
import os
import time

from d4c.node import simulate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=120)
    ap.add_argument("--artifacts", type=int, default=1200)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-scenarios", action="store_true", help="only the 5x and 1.35x table")
    args = ap.parse_args()
    start = time.perf_counter()
    rows = simulate.compare(args.nodes, args.artifacts, args.days, args.seed)
    print(f"{args.nodes} nodes, {args.artifacts} artifacts, {args.days} days, seed {args.seed}\n")
    print(simulate.table(rows))
    if not args.no_scenarios:
        print()
        print(simulate.scenario_table(simulate.scenarios(args.nodes, args.artifacts, args.days, args.seed)))
    print(f"\n{time.perf_counter() - start:.1f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
