"""One exception root and one top-level handler (the pre-commit / pip pattern).

Expected failures raise `D4CError` (exit 1, one line: what, where, how to fix);
usage mistakes raise `UsageError` (exit 2); anything else is a bug: exit 3 with a
log file holding versions and the traceback, and one line saying where it is.
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

from d4c.redact import redact


class D4CError(Exception):
    """An expected failure: bad input, a missing file, a server that said no."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def line(self) -> str:
        """The single line shown to the user."""
        parts = [f"{self.where}: " if self.where else "", self.message]
        if self.hint:
            parts.append(f" (hint: {self.hint})")
        return redact("".join(parts))


class UsageError(D4CError):
    """The command line itself is wrong."""

    exit_code = 2


def _crash_log(exc: BaseException) -> Path:
    from d4c import __version__

    # In the checkout's .d4c/logs/ (CI keeps the workspace, and uploads it on failure), else tmp.
    folder: str | None = None
    try:
        from d4c import paths

        logs = paths.state_dir() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        folder = str(logs)
    except (D4CError, OSError):
        folder = None
    fd, name = tempfile.mkstemp(prefix="d4c-crash-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"d4c {__version__}\npython {sys.version}\nplatform {platform.platform()}\n")
        fh.write(f"argv {redact(' '.join(sys.argv))}\n\n")
        fh.write(redact("".join(traceback.format_exception(exc))))
    return Path(name)


def run_guarded(func: Callable[[], int]) -> int:
    """Run a command; turn exceptions into one line and an exit code."""
    try:
        return func()
    except D4CError as exc:
        print(f"error: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - the last-resort handler
        log = _crash_log(exc)
        line = f"unexpected {type(exc).__name__}: {redact(str(exc))[:300]} (this is a bug in d4c; details in {log})"
        print(f"error: {line}", file=sys.stderr)
        from d4c import ci

        ci.annotate("error", line, title="d4c crashed")
        return 3
