"""The host never trusts what a transform left in its output folder.

Each transform leaves one bad entry where an output should be: a symbolic link to a
host file (a CSV whose column name is the canary) or to /proc/self/environ (which,
followed by the host, is the d4c process's own environment, credentials included),
a hard link, a FIFO (a reader would block), a folder, an undeclared file, bytes
that are not the declared format. The worker's own output check is switched off
first, so that what is tested is the host's check. From the host: exit 1, one
clear `error:` line, no output folder and no staging folder, the canary nowhere.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Canary
from .helpers import add_dataset, assert_absent, assert_no_output, error_line, run_build, tree_bytes

BAD_OUTPUT = '''\
import os
import sys

KIND = {kind!r}
HOST_FILE = {host_file!r}


def build(ctx):
    # The worker checks the outputs too, inside the sandbox: the transform can undo that,
    # so it does, and only the host's check stands.
    for name in ("__main__", "d4c.build.worker"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "_check_outputs"):
            module._check_outputs = lambda spec, ctx: None
    parquet, csv = ctx.output_path("table"), ctx.output_path("table-csv")
    parquet.write_bytes(b"PAR1 not really")
    if KIND == "symlink-host-file":
        os.symlink(HOST_FILE, csv)
    elif KIND == "symlink-proc-environ":
        os.symlink("/proc/self/environ", csv)
    elif KIND == "hardlink":
        os.link(parquet, csv)
    elif KIND == "fifo":
        os.mkfifo(csv)
    elif KIND == "folder":
        os.mkdir(csv)
        (csv / "inside.csv").write_text("pruid\\n1\\n")
    elif KIND == "undeclared":
        csv.write_text("pruid\\n1\\n")
        (csv.parent / "extra.txt").write_text("not declared")
    elif KIND == "undeclared-hidden":
        csv.write_text("pruid\\n1\\n")
        (csv.parent / ".hidden").write_text("not declared either")
    elif KIND == "not-the-declared-format":
        csv.write_bytes(b"\\x00\\xff\\x00 not a table")
'''

# kind -> what the one error line must say
EXPECTED = {
    "symlink-host-file": "is a symbolic link, not a regular file",
    "symlink-proc-environ": "is a symbolic link, not a regular file",
    "hardlink": "has 2 hard links",
    "fifo": "is a FIFO, not a regular file",
    "folder": "is a folder, not a regular file",
    "undeclared": "undeclared file 'extra.txt'",
    "undeclared-hidden": "undeclared file '.hidden'",
    "not-the-declared-format": "table",  # the output's name; and no "bug in d4c"
}


@pytest.mark.timeout(120)  # a host that opened the FIFO would hang here
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_output_fails_the_build_cleanly(kind: str, runner: str, repo: Path, canary: Canary, tmp_path: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    host_file = tmp_path / "host-table.csv"
    host_file.write_text(f"pruid,{canary.value}\n1,2\n")
    before = host_file.read_bytes()
    ds = add_dataset(repo, f"output-{kind}-{runner}", BAD_OUTPUT.format(kind=kind, host_file=str(host_file)))
    built = run_build(repo, ds, runner, capfd)
    line = error_line(built)
    assert EXPECTED[kind] in line, line
    assert "bug in d4c" not in line and "unexpected" not in line, line
    assert_no_output(built.out)
    assert host_file.read_bytes() == before
    blobs = tree_bytes(built.out.parent)
    blobs["captured stdout+stderr"] = built.log.encode()
    assert_absent(canary.value, blobs)
    assert_absent(canary.proxy, blobs)


@pytest.mark.timeout(120)
def test_undeclared_file_is_refused_by_the_worker_too(runner: str, repo: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """Without tampering, the worker already names the stray file (the friendlier message)."""
    ds = add_dataset(repo, f"stray-{runner}", (
        "import pandas as pd\n\n"
        "def build(ctx):\n"
        "    df = pd.DataFrame({'pruid': [1]})\n"
        "    ctx.write_parquet('table', df)\n"
        "    ctx.write_csv('table-csv', df)\n"
        "    ctx.output_path('table').with_name('notes.txt').write_text('scratch')\n"
    ))
    built = run_build(repo, ds, runner, capfd)
    line = error_line(built)
    assert "undeclared file(s) ['notes.txt']" in line, line
    assert_no_output(built.out)
