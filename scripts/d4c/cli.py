"""Command-line entry point: parse arguments and dispatch, nothing else.

Each command is one module in `d4c.commands` exposing
`add_arguments(parser) -> None` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from d4c import __version__
from d4c.errors import UsageError, run_guarded
from d4c.redact import install_log_redaction

# name -> (module, one-line help). Adding a command is one module and one entry here.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("d4c.commands.validate", "check recipes against the schema and the lints"),
    "plan": ("d4c.commands.plan", "which datasets a git change touches (JSON for a CI matrix)"),
    "chain": ("d4c.commands.chain", "start the next run of a release chained past 256 matrix rows (CI)"),
    "fetch": ("d4c.commands.fetch", "fetch a dataset's sources into the cache, verified by sha256"),
    "build": ("d4c.commands.build", "build a dataset's artifacts and manifest, offline"),
    "images": ("d4c.commands.images", "save sharded datasets' container images for CI's shard jobs, with their ids"),
    "diff": ("d4c.commands.diff", "build diff against the latest (or a given) release"),
    "release": ("d4c.commands.release", "publish a built version to every target"),
    "verify": ("d4c.commands.verify", "rebuild from a manifest, release record or bundle and compare"),
    "catalog": ("d4c.commands.catalog", "build or query the STAC GeoParquet catalog"),
    "mirrors": ("d4c.commands.mirrors", "check every copy of every artifact on every mirror"),
    "node": ("d4c.commands.node", "a volunteer node: keep rare and at-risk copies within a budget"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 2, one line) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's module is imported (the others are
    listed but not loaded: importing every step costs ~0.5 s of pyarrow, duckdb, ...)."""
    parser = _Parser(prog="d4c", description="Data for Canada: dataset releases as code.")
    parser.add_argument("--version", action="version", version=f"d4c {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command not built yet is simply not offered
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def go() -> int:
        args_in = list(sys.argv[1:] if argv is None else argv)
        first = next((a for a in args_in if not a.startswith("-")), None)
        args = build_parser(first if first in COMMANDS else None).parse_args(args_in)
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        install_log_redaction()
        if not args.verbose:  # one WARNING per retry beside d4c's own line for the final failure
            logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        if not getattr(args, "_run", None):
            raise UsageError("no command given", hint="see `d4c --help`")
        return int(args._run(args))

    return run_guarded(go)


if __name__ == "__main__":
    sys.exit(main())
