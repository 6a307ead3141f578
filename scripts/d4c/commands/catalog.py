"""`d4c catalog build|query|validate|site`: the STAC GeoParquet catalog of every released
version, and the static site built from it."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from d4c.errors import D4CError, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    b = sub.add_parser("build", help="regenerate the catalog from releases/")
    b.add_argument("--releases", type=Path, help="release records folder (default: releases/)")
    b.add_argument("--out", type=Path, default=Path("catalog.parquet"),
                   help="catalog file to write (default: catalog.parquet, where query, validate "
                        "and site look)")
    b.add_argument("--collections-dir", type=Path,
                   help="also write catalog.json, collections and item JSON for STAC browsers")
    q = sub.add_parser("query", help="query the catalog with DuckDB")
    q.add_argument("--catalog", default="catalog.parquet", help="path, https:// or s3:// URL")
    q.add_argument("--dataset", help="dataset id")
    q.add_argument("--version", help="version, e.g. 1.2.0")
    q.add_argument("--latest", action="store_true", help="only the latest version of each dataset")
    q.add_argument("--sql", help="SQL over the view `catalog` (overrides the filters)")
    q.add_argument("--format", choices=("table", "json", "csv"), default="table")
    v = sub.add_parser("validate", help="validate every item and collection, offline")
    v.add_argument("--catalog", type=Path, default=Path("catalog.parquet"))
    s = sub.add_parser("site", help="write a static site for people: a page per dataset, a "
                                    "footprint map, mirror health (views offline)")
    s.add_argument("--catalog", default="catalog.parquet", help="path, https:// or s3:// URL")
    s.add_argument("--health", type=Path,
                   help="health file, or a folder whose newest <date>.parquet is used "
                        "(default: the catalog's d4c:at_risk fields)")
    s.add_argument("--min-copies", type=int, default=3,
                   help="with --health: fewer passing copies is at risk (default 3)")
    s.add_argument("--out", type=Path, required=True, help="folder to write (replaced whole)")


def _build(args: argparse.Namespace) -> int:
    from d4c import paths
    from d4c.catalog.build import metadata_from
    from d4c.catalog.parallel import build_from_releases

    releases = args.releases or paths.releases_dir()
    count, colls = build_from_releases(releases, args.out,
                                       metadata=metadata_from(releases.resolve().parent),
                                       collections_dir=args.collections_dir)
    # One line, after the fact: a bad record is then the only line of a failed build.
    versions, datasets = ("version" if count == 1 else "versions"), ("dataset" if len(colls) == 1 else "datasets")
    print(f"wrote {count} {versions} of {len(colls)} {datasets} to {args.out} from the release "
          f"records in {releases}", file=sys.stderr)
    return 0


def _cell(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value


def _query(args: argparse.Namespace) -> int:
    from d4c.catalog.query import query

    table = query(args.catalog, dataset=args.dataset, version=args.version,
                  latest=args.latest, sql=args.sql)
    rows = [{k: _cell(v) for k, v in row.items()} for row in table.to_pylist()]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([[json.dumps(v) if isinstance(v, dict | list) else v for v in r.values()]
                          for r in rows])
    else:
        from rich.console import Console
        from rich.table import Table

        out = Table(*table.column_names, show_lines=False)
        for r in rows:
            out.add_row(*("" if v is None else str(v) for v in r.values()))
        Console(width=200).print(out)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from d4c.catalog.append import read_catalog
    from d4c.catalog.validation import validate_collection, validate_item
    from d4c.catalog.writer import table_to_items

    if not args.catalog.is_file():
        raise D4CError(f"no catalog at {args.catalog}", hint="run `d4c catalog build` first")
    table, colls = read_catalog(args.catalog)
    problems = [p for i in table_to_items(table) for p in validate_item(i)]
    problems += [p for c in colls.values() for p in validate_collection(c)]
    for p in problems:
        print(p)
    print(f"{table.num_rows} items, {len(colls)} collections, {len(problems)} problems",
          file=sys.stderr)
    return 1 if problems else 0


def _site(args: argparse.Namespace) -> int:
    from d4c.catalog.site_write import build_site

    if args.min_copies < 1:
        raise UsageError("--min-copies must be at least 1")
    datasets, versions = build_site(args.catalog, args.out, health=args.health,
                                    min_copies=args.min_copies)
    print(f"wrote the site of {datasets} datasets ({versions} versions) to {args.out}; "
          f"open {args.out / 'index.html'}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"build": _build, "query": _query, "validate": _validate, "site": _site}
    if args.action not in actions:
        raise UsageError("no catalog action given", hint="d4c catalog build|query|validate|site")
    return actions[args.action](args)
