"""`d4c mirrors check|annotate|repair|issues|publish|pull`: every copy of every artifact checked,
repaired, reported and published (docs/mirrors.md)."""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from d4c.errors import D4CError, UsageError

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?", re.IGNORECASE)


def _size(text: str) -> int:
    """500M, 10GiB, 1000000 -> bytes (k/M/G/T powers of 1000, KiB/MiB/GiB/TiB of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500M, 10GiB, 1000000)")
    power = " kmgt".index(m[2].lower() or " ")
    return int(float(m[1]) * (1024 if m[3] else 1000) ** power)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    c = sub.add_parser("check", help="check every copy of every artifact in the catalog")
    c.add_argument("--catalog", help="catalog file or https:// / s3:// URL (default: the targets "
                                     "config's catalog)")
    c.add_argument("--targets", type=Path, help="targets config (default: $D4C_TARGETS)")
    c.add_argument("--tier", type=int, choices=range(4), default=2,
                   help="run tiers 0 to N (0 mirrors up and fresh, 1 HEAD, 2 sampled pieces, "
                        "3 full sha256 on failures and a rolling sample); default 2")
    c.add_argument("--budget", type=_size, default=None,
                   help="bytes tier 3 may read (default 10GiB)")
    c.add_argument("--pieces", type=int, default=4, help="pieces per copy in tier 2 (default 4)")
    c.add_argument("--date", help="the seed date YYYY-MM-DD (default today, UTC): rerun a past check")
    c.add_argument("--health-dir", type=Path, default=Path("health"),
                   help="where <date>.parquet and <date>.md go (default health/)")
    c.add_argument("--jobs", type=int, default=16, help="requests in flight in all (default 16)")
    c.add_argument("--per-host", type=int, default=4, help="requests in flight per host (default 4)")
    c.add_argument("--rate", type=float, default=50.0, help="requests a second per host (default 50)")
    c.add_argument("--retries", type=int, default=3, help="retries of a failed request (default 3)")
    c.add_argument("--min-copies", type=int, default=3,
                   help="a version with fewer passing copies is at risk (default 3)")
    c.add_argument("--no-scrape", action="store_true", help="skip the tracker scrape")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = sub.add_parser("annotate", help="write d4c:copies_ok, d4c:last_verified, d4c:at_risk "
                                        "into a local catalog file from the latest health file")
    a.add_argument("--catalog", type=Path, required=True, help="the catalog file to rewrite")
    a.add_argument("--health-dir", type=Path, default=Path("health"))
    a.add_argument("--min-copies", type=int, default=3)
    r = sub.add_parser("repair", help="put the copies the latest health file finds missing or corrupt "
                                      "back from a copy that passed, through the release's targets")
    r.add_argument("--targets", type=Path, help="targets config (default: $D4C_TARGETS)")
    r.add_argument("--health-dir", type=Path, default=Path("health"),
                   help="the latest <date>.parquet here says which copies failed (default health/)")
    r.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    r.add_argument("--format", choices=("text", "json"), default="text", help="the plan's form (--dry-run)")
    i = sub.add_parser("issues", help="one GitHub issue (marker, title, body) per broken copy of the "
                                      "latest health file, as JSON for the scheduled workflow")
    i.add_argument("--health-dir", type=Path, default=Path("health"))
    i.add_argument("--catalog", help="the catalog the check read, for the reproducing command "
                                     "(default: the targets config's)")
    i.add_argument("--targets", type=Path, help="targets config (default: $D4C_TARGETS)")
    i.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    for name, text in (("publish", ("write the latest health file, its summary and latest.parquet "
                                    "next to the catalog (the catalog target's credentials)")),
                       ("pull", ("read the published latest.parquet (anonymously) into --health-dir: "
                                 "the ETag baseline of the next check"))):
        x = sub.add_parser(name, help=text)
        x.add_argument("--targets", type=Path, help="targets config (default: $D4C_TARGETS)")
        x.add_argument("--health-dir", type=Path, default=Path("health"))


def default_catalog(targets: Path | None) -> str:
    """The catalog the targets config publishes (its public URL), or its local path."""
    from d4c import paths
    from d4c.release import config as tconfig

    path = targets or (Path(os.environ["D4C_TARGETS"]) if os.environ.get("D4C_TARGETS") else None)
    cfg = tconfig.load(path)
    if cfg.catalog_target:
        from d4c.release.targets import make_target

        conf = cfg.config_of(cfg.catalog_target)
        if conf.kind == "local":
            base = Path(str(conf.options.get("path") or "publish"))
            return str(base / cfg.catalog_key)
        return make_target(conf, {}).public_url(cfg.catalog_key)
    return cfg.catalog or str(paths.state_dir() / "catalog" / "catalog.parquet")


@contextmanager
def _bar(show: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("checking copies", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as progress:
        task = progress.add_task("copies", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def say(line: str) -> None:
    """Print one line to stderr: names and evidence come from catalogs, bundles and servers,
    so control characters are escaped (a newline would start, e.g., a workflow command)."""
    from d4c.mirrors.inventory import printable

    print(printable(line), file=sys.stderr)


def _check(args: argparse.Namespace) -> int:
    from d4c import ci
    from d4c.mirrors import health, run
    from d4c.mirrors.inventory import printable
    from d4c.mirrors.run import DEFAULT_BUDGET, Options, check, failure_lines, write_report

    catalog = args.catalog or default_catalog(args.targets)
    show = not args.no_progress and sys.stderr.isatty() and not ci.active()
    with _bar(show) as progress:
        opts = Options(tier=args.tier, budget=DEFAULT_BUDGET if args.budget is None else args.budget,
                       pieces=args.pieces, jobs=args.jobs, per_host=args.per_host, rate=args.rate,
                       retries=args.retries, min_copies=args.min_copies, date=args.date,
                       scrape=not args.no_scrape, progress=progress)
        if args.pieces < 1 or args.jobs < 1 or args.per_host < 1:
            raise UsageError("--pieces, --jobs and --per-host must be at least 1")
        report = check(catalog, opts, health_dir=args.health_dir)
    dest, md, text = write_report(report, args.health_dir, args.tier)
    ci.summary(text)
    s = report.stats
    say(f"checked {s['copies']} copies of {s['artifacts']} artifacts ({s['versions']} versions) "
        f"in {s['seconds']:.1f} s: {s['requests']} requests, {s['bytes']} bytes; wrote {dest} and {md}")
    for line in run.warning_lines(report.rows):  # catalog rows and source lists left out
        say(f"warning: {line}")
    lines = [printable(line) for line in failure_lines(report.rows)]
    for line in lines:
        say(f"error: {line}")
        ci.annotate("error", line, title="mirror health")
    at_risk = sum(r.at_risk for r in report.risk.values())
    if at_risk:
        say(f"{at_risk} of {len(report.risk)} versions at risk (see {md})")
    if lines:  # one line per failing check; a copy failing two (fresh, head) is one copy
        copies = len({(r["mirror"], r["href"]) for r in health.failures(list(report.rows))})
        say(f"{len(lines)} failing checks of {copies} {'copy' if copies == 1 else 'copies'} "
            "(missing, refused, corrupt, changed or unreachable)")
        return 1
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from d4c.catalog.health import annotate_file
    from d4c.mirrors import health

    latest = health.latest(args.health_dir)
    if latest is None:
        raise D4CError(f"no health file in {args.health_dir}", hint="run `d4c mirrors check` first")
    changed = annotate_file(args.catalog, health.risks(health.read(latest), args.min_copies))
    print(f"annotated {changed} versions of {args.catalog} from {latest}", file=sys.stderr)
    return 0


def _repair(args: argparse.Namespace) -> int:
    from d4c import canonical
    from d4c.mirrors.inventory import printable
    from d4c.mirrors.repair import execute, plan_repair

    plan = plan_repair(args.health_dir, _targets_file(args))
    if args.dry_run:
        print(canonical.dumps(plan.to_dict()).rstrip("\n") if args.format == "json"
              else "\n".join(printable(line) for line in plan.lines()))  # JSON escapes its own
        return 0
    done = execute(plan, echo=say)
    for note in plan.notes:
        say(f"left: {note}")
    copies = "copy" if done == 1 else "copies"
    say(f"repaired {done} {copies} from {plan.health}" + ("; `d4c mirrors check` confirms them" if done else ""))
    left = [n for n in plan.notes if "nothing to do" not in n]
    return 1 if left else 0


def _targets_file(args: argparse.Namespace) -> Path | None:
    return args.targets or (Path(os.environ["D4C_TARGETS"]) if os.environ.get("D4C_TARGETS") else None)


def _issues(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from d4c import canonical
    from d4c.atomic import atomic_write
    from d4c.mirrors import health
    from d4c.mirrors.issues import document

    latest = health.latest(args.health_dir)
    if latest is None:
        raise D4CError(f"no health file in {args.health_dir}", hint="run `d4c mirrors check` first")
    catalog = args.catalog or default_catalog(_targets_file(args))
    try:
        rows = health.read(latest)
        doc = document(rows, catalog=catalog, tier=max((int(r["tier"]) for r in rows), default=0),
                       health_file=latest.name)
    except (pa.ArrowException, KeyError, TypeError, ValueError, OSError):
        raise D4CError(f"{latest} is not a health file d4c wrote",
                       hint="remove it, or rerun `d4c mirrors check` to write that day's again") from None
    atomic_write(args.out, data=canonical.encode(doc))
    print(f"{len(doc['broken'])} broken copies, {len(doc['ok'])} passing, from {latest}: wrote {args.out}",
          file=sys.stderr)
    return 1 if doc["broken"] else 0


def _publish(args: argparse.Namespace) -> int:
    from d4c.mirrors.publish import publish
    from d4c.release import config as tconfig

    for url in publish(args.health_dir, tconfig.load(_targets_file(args))):
        print(f"published {url}", file=sys.stderr)
    return 0


def _pull(args: argparse.Namespace) -> int:
    from d4c.mirrors.publish import pull
    from d4c.release import config as tconfig

    got = pull(args.health_dir, tconfig.load(_targets_file(args)))
    print(f"baseline {got}" if got else "no published health file yet: this check starts the baseline",
          file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"check": _check, "annotate": _annotate, "repair": _repair, "issues": _issues,
               "publish": _publish, "pull": _pull}
    if args.action not in actions:
        raise UsageError("no mirrors action given",
                         hint="d4c mirrors check|annotate|repair|issues|publish|pull")
    return actions[args.action](args)
