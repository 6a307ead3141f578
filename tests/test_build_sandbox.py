"""Transforms that break the rules fail the build clearly and leave no output."""
from __future__ import annotations

import shutil
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from conftest import missing_tool
from d4c.cli import main

TEMPLATE = "ca_statcan_2021_population-density_provinces"


def add_dataset(repo: Path, name: str, transform: str) -> str:
    """A copy of the population-density dataset under a new id, with its own transform."""
    dataset_id = f"ca_test_{name}"
    folder = repo / "datasets" / dataset_id
    shutil.copytree(repo / "datasets" / TEMPLATE, folder)
    recipe = folder / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(f"id: {TEMPLATE}", f"id: {dataset_id}"))
    (folder / "transform.py").write_text(transform)
    return dataset_id


def build(repo: Path, dataset_id: str, capfd: pytest.CaptureFixture[str]) -> tuple[int, str, Path]:
    out = repo / "out" / dataset_id
    code = main(["build", dataset_id, "--out", str(out)])
    return code, capfd.readouterr().err, out


def assert_no_output(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.glob(f".{out.name}*")], "staging folder left behind"


@pytest.fixture
def repo(repo_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D4C_REPO", str(repo_copy))
    return repo_copy


def test_transform_that_raises_shows_its_traceback_under_one_line(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ds = add_dataset(repo, "raises", (
        "def helper(n):\n"
        "    raise ValueError(f'column density has {n} bad values')\n\n"
        "def build(ctx):\n"
        "    ctx.write_parquet('table', __import__('pandas').DataFrame({'pruid': [1]}))\n"
        "    helper(3)\n"
    ))
    code, err, out = build(repo, ds, capfd)
    assert code == 1
    assert "| transform transform.py:build raised ValueError: column density has 3 bad values\n" in err
    assert "|     Traceback" in err
    assert "transform.py\", line 2, in helper" in err
    assert "d4c/build/worker.py" not in err  # the contributor's frames only
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "transform failed: ValueError: column density has 3 bad values" in last
    assert_no_output(out)


def test_transform_writing_outside_its_output_folder_fails(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    leak = Path("/var/tmp") / f"d4c-leak-{repo.parent.name}.txt"  # outside /tmp, the sandbox's scratch
    ds = add_dataset(repo, "writes-outside", (
        "def build(ctx):\n"
        f"    open({str(leak)!r}, 'w').write('x')\n"
    ))
    code, err, out = build(repo, ds, capfd)
    assert code == 1
    assert "sandbox violation: the transform wrote outside its output folder" in err and str(leak) in err
    assert not leak.exists()
    assert_no_output(out)


def test_transform_reading_an_undeclared_repo_file_fails(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ds = add_dataset(repo, "reads-undeclared", (
        "from pathlib import Path\n\n"
        "def build(ctx):\n"
        "    try:\n"  # swallowing the error does not help: the violation is recorded
        "        Path(__file__).parent.joinpath('recipe.yaml').read_text()\n"
        "    except Exception:\n"
        "        pass\n"
        "    import pandas as pd\n"
        "    df = pd.DataFrame({'pruid': [1]})\n"
        "    ctx.write_parquet('table', df)\n"
        "    ctx.write_csv('table-csv', df)\n"
    ))
    code, err, out = build(repo, ds, capfd)
    assert code == 1
    assert "the transform read an undeclared repository file" in err and "recipe.yaml" in err
    assert "declare it under `sources:`" in err
    assert_no_output(out)


class _Counting(socketserver.BaseRequestHandler):
    hits: ClassVar[list[str]] = []

    def handle(self) -> None:
        _Counting.hits.append("connected")


@pytest.fixture
def server() -> Iterator[int]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_transform_opening_a_connection_fails(repo: Path, server: int, capfd: pytest.CaptureFixture[str]) -> None:
    _Counting.hits.clear()
    ds = add_dataset(repo, "network", (
        "import socket\n\n"
        "def build(ctx):\n"
        f"    socket.create_connection(('127.0.0.1', {server}), timeout=5).sendall(b'hi')\n"
    ))
    code, err, out = build(repo, ds, capfd)
    assert code == 1
    assert "sandbox violation: the transform opened a network connection" in err
    assert f"{server}" in err and "builds run offline" in err
    assert _Counting.hits == []
    assert_no_output(out)


def test_missing_output_and_unknown_names_are_clear(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    ds = add_dataset(repo, "missing", (
        "import pandas as pd\n\n"
        "def build(ctx):\n"
        "    ctx.write_parquet('table', pd.DataFrame({'pruid': [1]}))\n"
    ))
    code, err, out = build(repo, ds, capfd)
    assert code == 1 and "did not write the declared output(s) ['table-csv']" in err
    assert_no_output(out)
    ds = add_dataset(repo, "typo", "def build(ctx):\n    ctx.source('popluation')\n")
    code, err, out = build(repo, ds, capfd)
    assert code == 1 and "no source named 'popluation'; the recipe declares ['land-area', 'population']" in err


def test_native_code_cannot_see_undeclared_repo_files(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    if not shutil.which("bwrap"):
        missing_tool("hiding the repository from native code needs bubblewrap (bwrap)")
    other = repo / "datasets" / "ca_d4c_provinces-territories" / "sources" / "provinces-territories.csv"
    ds = add_dataset(repo, "native-read", (
        "import pyarrow.csv as pacsv\n\n"
        "def build(ctx):\n"
        f"    pacsv.read_csv({str(other)!r})  # C++ I/O: the audit hook does not see it\n"
    ))
    code, err, out = build(repo, ds, capfd)
    assert code == 1
    assert "Failed to open local file" in err and "transform failed" in err
    assert_no_output(out)


def test_no_bubblewrap_fails_with_the_fix_and_no_silent_downgrade(repo: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    bin_dir = tmp_path / "bin"  # git, but no bwrap
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(bin_dir))
    code, err, out = build(repo, TEMPLATE, capfd)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert "the build sandbox needs bwrap, and it is not installed" in last
    assert "apt-get install bubblewrap" in last and "--runner container" in last
    assert_no_output(out)


def test_no_sandbox_is_explicit_and_recorded(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json

    out = repo / "out" / "plain"
    assert main(["build", TEMPLATE, "--out", str(out), "--no-sandbox"]) == 0
    assert "--no-sandbox: the transform runs with no isolation; release refuses this build" in caplog.text
    env = json.loads((out / "manifest.json").read_text())["environment"]
    assert (env["sandbox"], env["network_isolation"]) == ("none", "none")
    assert main(["build", TEMPLATE, "--runner", "container", "--no-sandbox"]) == 2


def test_out_refuses_a_folder_that_is_not_an_earlier_build(repo: Path, capfd: pytest.CaptureFixture[str]) -> None:
    precious = repo / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    assert main(["build", TEMPLATE, "--out", str(precious)]) == 1
    assert "is not empty and is not an earlier d4c build output" in capfd.readouterr().err
    assert (precious / "thesis.tex").read_text() == "years of work"
    out = repo / "out" / "again"
    assert main(["build", TEMPLATE, "--out", str(out)]) == 0
    assert main(["build", TEMPLATE, "--out", str(out)]) == 0  # its own earlier build is replaced
