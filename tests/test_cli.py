"""The CLI skeleton: help, usage errors, one line per failure."""
from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "d4c", *args], capture_output=True, text=True, check=False)


def test_help_lists_commands() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    assert "usage: d4c" in proc.stdout


def test_unknown_command_is_usage_error() -> None:
    proc = run("no-such-command")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_command_is_usage_error() -> None:
    proc = run()
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no command given")
