"""`d4c build --out DIR` replaces only an earlier d4c build: a user's folder is never lost.

The checks happen before any transform runs, but through the same `d4c build` each
runner uses, so both runners are covered. From the host: the build is refused with
one line, and the precious file is still there, byte for byte.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import TEMPLATE, error_line, run_build

PRECIOUS = b"three years of field notes\n"


def _folder_with_precious(path: Path, manifest: dict[str, object] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "precious.txt").write_bytes(PRECIOUS)
    if manifest is not None:
        (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", ["plain-folder", "foreign-manifest", "symlink-to-folder", "repository-root"])
def test_out_refuses_a_folder_that_is_not_a_d4c_build(case: str, runner: str, repo: Path, tmp_path: Path,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    if case == "plain-folder":
        out = _folder_with_precious(tmp_path / "thesis")
        precious = out / "precious.txt"
    elif case == "foreign-manifest":
        # Another tool's manifest.json that happens to list files: it is not a d4c manifest.
        out = _folder_with_precious(tmp_path / "webapp", {"outputs": [{"file": "precious.txt"}]})
        precious = out / "precious.txt"
    elif case == "symlink-to-folder":
        target = _folder_with_precious(tmp_path / "thesis")
        out = tmp_path / "link"
        out.symlink_to(target)
        precious = target / "precious.txt"
    else:
        out = repo
        precious = repo / "precious.txt"
        precious.write_bytes(PRECIOUS)
    before = sorted(os.listdir(out))
    built = run_build(repo, TEMPLATE, runner, capfd, out=out)
    line = error_line(built)
    assert "--out" in line, line
    assert precious.read_bytes() == PRECIOUS
    assert sorted(os.listdir(out)) == before
    assert not [p for p in out.parent.glob(f".{out.name}*")], "a staging or .old folder was left"


@pytest.mark.timeout(300)
def test_out_leaves_the_neighbouring_folders_alone(runner: str, repo: Path, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """A folder beside --out whose name looks like d4c's own scratch (`.NAME.old`) is the user's."""
    out = tmp_path / "results"
    neighbour = _folder_with_precious(tmp_path / ".results.old")
    built = run_build(repo, TEMPLATE, runner, capfd, out=out)
    assert built.code == 0, built.err[-3000:]
    assert (out / "manifest.json").is_file()
    assert (neighbour / "precious.txt").read_bytes() == PRECIOUS, "d4c deleted a folder it did not make"


@pytest.mark.timeout(300)
def test_out_replaces_an_earlier_build(repo: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                       require_tool: Callable[..., str]) -> None:
    """The control: an earlier d4c build at --out is replaced (so the refusals above are not blanket)."""
    require_tool("bwrap")
    out = tmp_path / "build"
    assert run_build(repo, TEMPLATE, "local", capfd, out=out).code == 0
    (out / "manifest.json").touch()
    again = run_build(repo, TEMPLATE, "local", capfd, out=out)
    assert again.code == 0, again.err[-3000:]
    assert json.loads((out / "manifest.json").read_text())["dataset"]["id"] == TEMPLATE
