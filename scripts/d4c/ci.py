"""The one place that speaks to a CI runner: annotations, log groups, the step summary, timings.

GitHub Actions reads workflow commands from stdout (`::error file=F,line=L::message`,
`::group::title`) and appends Markdown to the file named by GITHUB_STEP_SUMMARY. Outside
CI every function here is a no-op or plain text, so commands call them unconditionally.
Everything that leaves passes through `redact`.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from d4c.redact import redact

SUMMARY_LIMIT = 1 << 20  # GitHub refuses a step summary over 1 MiB
log = logging.getLogger("d4c.ci")


def active() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    # actions/toolkit `escapeData` / `escapeProperty`
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_prop(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, message: str, *, file: str | None = None, line: int | None = None,
               col: int | None = None, title: str | None = None) -> str:
    """One workflow command line: `::error file=...,line=...,col=...,title=...::message`."""
    props = [f"{k}={escape_prop(str(v))}" for k, v in
             (("file", file), ("line", line), ("col", col), ("title", title)) if v is not None]
    return f"::{level}{' ' + ','.join(props) if props else ''}::{escape_data(redact(message))}"


def annotate(level: str, message: str, **where: str | int | None) -> None:
    """Print an annotation when running in GitHub Actions (stdout, where the runner reads them)."""
    if active():
        print(annotation(level, message, **where), flush=True)  # type: ignore[arg-type]


def summary(markdown: str) -> None:
    """Append to the step summary, if there is one; a failure to write is a warning, not an error."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    text = redact(markdown)
    try:
        used = os.path.getsize(path) if os.path.exists(path) else 0
        if used + len(text.encode()) > SUMMARY_LIMIT:
            text = "\n_(d4c: the step summary is full; the rest is in the log)_\n"
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        print(f"warning: cannot append to GITHUB_STEP_SUMMARY: {exc.strerror}", file=sys.stderr)


@contextmanager
def step(title: str) -> Iterator[None]:
    """A collapsible log group in CI, and the step's wall time in the log everywhere."""
    if active():
        print(f"::group::{escape_data(title)}", flush=True)
    start = time.monotonic()
    try:
        yield
    finally:
        log.info("%s: %.1f s", title, time.monotonic() - start)
        if active():
            print("::endgroup::", flush=True)
