"""`d4c node init|plan|sync|status|audit|simulate`: the volunteer's program (docs/nodes.md)."""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from d4c.errors import D4CError, UsageError

_EVERY = re.compile(r"(\d+)\s*([smhd])")


def _size(text: str) -> int:
    from d4c.node.config import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _every(text: str) -> int:
    m = _EVERY.fullmatch(text.strip())
    if not m or int(m[1]) == 0:
        raise argparse.ArgumentTypeError(f"not an interval: {text!r} (e.g. 30m, 6h, 1d)")
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="node config (default: $D4C_NODE_CONFIG, "
                                                    "else ~/.config/d4c/node.yaml)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    i = sub.add_parser("init", help="write a node config with a new node key")
    i.add_argument("--catalog", required=True, help="the catalog URL (https://, s3://) or file")
    i.add_argument("--data", type=Path, required=True, help="the folder the node keeps copies in")
    i.add_argument("--budget", required=True, help="the most the node holds (e.g. 500G, 2T)")
    i.add_argument("--reserve", default="1G", help="room for a download before its eviction (default 1G)")
    i.add_argument("--bandwidth", default="50G", help="the most it downloads a day (default 50G)")
    i.add_argument("--allow", action="append", default=[], metavar="PATTERN",
                   help="keep only these collections (glob; repeatable)")
    i.add_argument("--deny", action="append", default=[], metavar="PATTERN",
                   help="never keep these collections (glob; repeatable)")
    i.add_argument("--checkins", help="the check-in log: s3://bucket/prefix, or a shared folder")
    i.add_argument("--seeder", help="transmission-daemon's RPC URL, to seed what the node holds "
                                    "(e.g. http://127.0.0.1:9091/transmission/rpc)")
    i.add_argument("--force", action="store_true", help="replace an existing config (a new key)")
    p = sub.add_parser("plan", help="print what the node would fetch and evict, and why")
    p.add_argument("--max", type=_size, help="fetch at most this much (\"a list for N GB\")")
    s = sub.add_parser("sync", help="fetch, verify and evict as planned, then check in")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--once", action="store_true", help="one run (the default; for cron or a timer)")
    g.add_argument("--every", type=_every, metavar="INTERVAL", help="run forever, every 30m, 6h, ...")
    sub.add_parser("status", help="what the node holds, today's bandwidth, the last check-in")
    a = sub.add_parser("audit", help="check every node's check-in against the mirrors' bytes")
    a.add_argument("--catalog", required=True, help="the catalog URL or file")
    a.add_argument("--checkins", required=True, help="the check-in log: s3://bucket/prefix or a folder")
    a.add_argument("--sample", type=int, default=8, help="files checked per check-in (default 8)")
    m = sub.add_parser("simulate", help="the policies side by side on a simulated network")
    m.add_argument("--nodes", type=int, default=120)
    m.add_argument("--artifacts", type=int, default=1200)
    m.add_argument("--days", type=int, default=90)
    m.add_argument("--seed", type=int, default=1)


def _gb(n: float) -> str:
    """Bytes for people: 1.2 GB, 340 kB, 12 B (powers of 1000)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _plan(args: argparse.Namespace) -> int:
    from d4c.node import config, sync

    report = sync.run(config.load(args.config), dry=True, max_fetch=args.max)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for c, why in report.plan.evict:
        if why.startswith("room for "):
            why = f"room for {report.paths.get(why.removeprefix('room for '), '?')}"
        print(f"evict  {report.paths.get(c.sha256, c.sha256)}  {_gb(c.size)}  {why}")
    for c, why in report.plan.fetch:
        print(f"fetch  {report.paths.get(c.sha256, c.sha256)}  {_gb(c.size)}  {why}")
    print(f"{len(report.plan.fetch)} to fetch ({_gb(report.plan.fetch_bytes)}), "
          f"{len(report.plan.evict)} to evict", file=sys.stderr)
    return 0


def _sync_once(args: argparse.Namespace) -> int:
    from d4c.node import config, sync

    report = sync.run(config.load(args.config))
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in report.evicted:
        print(f"evicted {line}", file=sys.stderr)
    for line in report.fetched:
        print(f"fetched {line}", file=sys.stderr)
    for line in report.paused:
        print(f"paused {line}", file=sys.stderr)
    for line in report.failed:
        print(f"error: {line}", file=sys.stderr)
    print(f"{len(report.fetched)} fetched, {len(report.evicted)} evicted, {len(report.failed)} "
          f"failed, {_gb(report.downloaded)} downloaded; check-in {report.checkin[-1]}", file=sys.stderr)
    return 1 if report.failed and not report.fetched else 0


def _sync(args: argparse.Namespace) -> int:
    if not args.every:
        return _sync_once(args)
    import signal

    # As a container's PID 1 a signal without a handler is ignored: stop cleanly on TERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:  # a failed run (a mirror down, a bad catalog) waits for the next one
        try:
            _sync_once(args)
        except D4CError as exc:
            print(f"error: {exc.line()}", file=sys.stderr)
        time.sleep(args.every)


def _status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from d4c.node import config
    from d4c.node.store import Store

    cfg = config.load(args.config)
    store = Store(cfg.data)
    state = store.load()
    today = datetime.now(UTC).date().isoformat()
    print(f"node {cfg.node_id}, data {cfg.data}")
    print(f"holds {len(state.held)} files, {_gb(store.held_bytes(state))} of {_gb(cfg.budget)} "
          f"(+ {_gb(cfg.reserve)} reserve); partial downloads {_gb(store.partial_bytes())}")
    print(f"downloaded today {_gb(state.downloaded.get(today, 0))} of {_gb(cfg.bandwidth_per_day)}")
    last = max((h.verified_at for h in state.held.values()), default="never")
    print(f"last verified copy {last}; last check-in {store.meta / 'checkin.json'}")
    return 0


def _init(args: argparse.Namespace) -> int:
    from d4c.node import config

    path = args.config or config.default_path()
    cfg = config.init(path, catalog=args.catalog, data=args.data, budget=args.budget,
                      reserve=args.reserve, bandwidth=args.bandwidth, allow=args.allow,
                      deny=args.deny, checkins=args.checkins, seeder=args.seeder, force=args.force)
    cfg.data.mkdir(parents=True, exist_ok=True)
    print(f"wrote {path} (node {cfg.node_id}); run `d4c node plan`, then `d4c node sync`",
          file=sys.stderr)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from d4c.node import audit
    from d4c.node.log import open_log

    warn: list[str] = []
    verdicts = audit.run(args.catalog, open_log(args.checkins), datetime.now(UTC), max(1, args.sample), warn)
    for line in warn:
        print(f"warning: {line}", file=sys.stderr)
    for v in verdicts:
        state = "counted" if v.counted else f"NOT counted: {len(v.wrong)} wrong (e.g. {v.wrong[0][:16]})"
        print(f"node {v.node}  {v.at}  {v.claimed} files, {v.checked} checked  {state}")
    bad = sum(not v.counted for v in verdicts)
    print(f"{len(verdicts)} nodes, {bad} failed their challenge", file=sys.stderr)
    return 1 if bad else 0


def _simulate(args: argparse.Namespace) -> int:
    from d4c.node import simulate

    if min(args.nodes, args.artifacts, args.days) < 1:
        raise UsageError("--nodes, --artifacts and --days must be at least 1")
    print(simulate.table(simulate.compare(args.nodes, args.artifacts, args.days, args.seed)))
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"init": _init, "plan": _plan, "sync": _sync, "status": _status, "audit": _audit,
               "simulate": _simulate}
    if args.action not in actions:
        raise UsageError("no node action given", hint="d4c node init|plan|sync|status|audit|simulate")
    return actions[args.action](args)
